"""Log lines: readable text on a terminal, JSON when stderr is not one or when asked."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

import pytest

from tests.service.process import REPO_ROOT

_LOG_ONE = (
    "import logging, sys; from service.logs import configure_logging; "
    "configure_logging('info', sys.argv[1]); logging.getLogger('service.demo').info('hello %s', 'there')"
)


def _stderr_of(fmt: str, tty: bool) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    if not tty:
        done = subprocess.run(
            [sys.executable, "-c", _LOG_ONE, fmt], env=env, capture_output=True, timeout=60, check=True
        )
        return done.stderr.decode()
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _LOG_ONE, fmt], env=env, stderr=follower, timeout=60, check=True
        )
        assert proc.returncode == 0
        return os.read(leader, 65536).decode()
    finally:
        os.close(leader)
        os.close(follower)


def test_auto_is_text_on_a_terminal() -> None:
    line = _stderr_of("auto", tty=True).strip()
    assert line.endswith("INFO service.demo: hello there")
    assert not line.startswith("{")


@pytest.mark.parametrize(("fmt", "tty"), [("auto", False), ("json", True)])
def test_json_when_not_a_terminal_or_when_asked(fmt: str, tty: bool) -> None:
    doc = json.loads(_stderr_of(fmt, tty).strip())
    assert doc["msg"] == "hello there"
    assert doc["logger"] == "service.demo"
    assert doc["level"] == "info"
