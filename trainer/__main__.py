"""``python -m trainer``: see :mod:`trainer.cli`."""

from .extra import missing_train_extra

try:
    from .cli import main
except ModuleNotFoundError as exc:
    message = missing_train_extra(exc)
    if message is None:
        raise
    raise SystemExit(message) from None

raise SystemExit(main())
