from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.servers import ServerProcess, check_png, condgen_spec, free_port, process_tree, rss_mb
from tests.bench.conftest import GRAY, RGB, UNCOND


def test_check_png_and_same_bytes_for_the_same_request(condgen: ServerProcess) -> None:
    a = check_png(condgen.spec.base_url, GRAY, label=3, seed=7, n=4)
    b = check_png(condgen.spec.base_url, GRAY, label=3, seed=7, n=4)
    assert a == b
    assert a != check_png(condgen.spec.base_url, GRAY, label=3, seed=8, n=4)
    with pytest.raises(RuntimeError, match="422"):
        check_png(condgen.spec.base_url, RGB, label=5)  # cond-rgb has three classes


def test_check_png_asks_an_unconditional_model_without_a_label(condgen: ServerProcess) -> None:
    a = check_png(condgen.spec.base_url, UNCOND, label=None)
    assert a == check_png(condgen.spec.base_url, UNCOND, label=None)
    with pytest.raises(RuntimeError, match="422"):
        check_png(condgen.spec.base_url, UNCOND, label=0)


def test_memory_is_read_from_proc(condgen: ServerProcess) -> None:
    assert condgen.pid in process_tree(condgen.pid)
    assert 10 < condgen.rss_mb() == rss_mb(condgen.pid, tree=True)


def test_cold_start_is_timed_and_stop_leaves_nothing(tiny_zoo: Path, tmp_path: Path) -> None:
    server = ServerProcess(condgen_spec(tiny_zoo, threads=1, port=free_port()), cpus=None, log_dir=tmp_path)
    with server:
        ready_s = server.wait_ready(timeout_s=60.0)
        pid = server.pid
    assert 0 < ready_s < 60
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
