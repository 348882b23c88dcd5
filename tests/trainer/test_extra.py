"""``python -m trainer`` without the train extra: a clear message, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.service.process import REPO_ROOT
from trainer.extra import missing_train_extra

# `import torch` fails in this child, as in an install without the train extra.
WITHOUT_TORCH = (
    "import runpy, sys; sys.modules['torch'] = None; sys.argv = ['trainer', *sys.argv[1:]]; "
    "runpy.run_module('trainer', run_name='__main__')"
)


def test_python_m_trainer_without_torch_names_the_extra() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, "--help"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        "the trainer's commands need torch, which is not installed; "
        "install the train extra: pip install 'condgen[train]'"
    )


def test_only_the_train_extras_modules_count() -> None:
    assert missing_train_extra(ModuleNotFoundError("x", name="torch.nn")) is not None
    assert missing_train_extra(ModuleNotFoundError("x", name="onnx")) is not None
    assert missing_train_extra(ModuleNotFoundError("x", name="somethingelse")) is None
