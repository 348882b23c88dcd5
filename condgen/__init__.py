"""condgen's user side: the Python client and the ``condgen`` command.

``from condgen import Client``; ``Client(url).generate("condgen-mnist", label="3", n=16, seed=123)``.
"""

from condgen.client import AsyncClient, Client, ClientConfig, ModelInfo
from condgen.errors import (
    BadRequest,
    CondgenError,
    ConnectionFailed,
    NotFound,
    Overloaded,
    ServerError,
    TooLarge,
    Unauthorized,
    Unavailable,
    UnknownModel,
)
from condgen.images import Images
from condgen.retry import RetryPolicy
from condgen.version import __version__

__all__ = [
    "AsyncClient",
    "BadRequest",
    "Client",
    "ClientConfig",
    "CondgenError",
    "ConnectionFailed",
    "Images",
    "ModelInfo",
    "NotFound",
    "Overloaded",
    "RetryPolicy",
    "ServerError",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "UnknownModel",
    "__version__",
]
