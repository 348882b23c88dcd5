"""Whether the train extra is installed: the trainer's commands need torch and onnx, the service
does not. Imports nothing heavy, so a command can say what is missing instead of a traceback."""

from __future__ import annotations

# Top-level modules of the train extra (pyproject.toml's optional-dependencies.train).
TRAIN_EXTRA_MODULES = frozenset({"torch", "onnx", "onnxscript", "tqdm", "matplotlib", "PIL"})
INSTALL_HINT = "install the train extra: pip install 'condgen[train]'"


def missing_train_extra(exc: ModuleNotFoundError) -> str | None:
    """The message for a missing train-extra module, or None when ``exc`` is about another one."""
    top = (exc.name or "").split(".")[0]
    if top not in TRAIN_EXTRA_MODULES:
        return None
    return f"the trainer's commands need {top}, which is not installed; {INSTALL_HINT}"
