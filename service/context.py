"""What a request carries for the layers around it: the model it named.

The handler (or the validation error handler, for a body that failed) notes the name the client
asked for; :class:`service.middleware.RequestContextMiddleware` turns it into the one model label
that both the request metrics and the access line use.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any

from service.metrics import UNKNOWN_MODEL

# Key in the ASGI scope's "state" (``request.state.<key>``): the model name the client asked for.
STATE_MODEL = "requested_model"


def note_model(scope: MutableMapping[str, Any], name: str) -> None:
    """Record the model name this request asked for, known or not."""
    scope.setdefault("state", {})[STATE_MODEL] = name


def model_label(state: MutableMapping[str, Any], is_known: Callable[[str], bool]) -> str | None:
    """A known model's name, ``unknown`` for any other name, None when the request named none.

    Never a name a client made up: metrics label series with it and the log writes it.
    """
    name = state.get(STATE_MODEL)
    if not isinstance(name, str):
        return None
    return name if is_known(name) else UNKNOWN_MODEL
