"""The wheel carries what the installed commands need: the condgen package and its console script,
the playground's files, and the trainer's classifier weights (``evaluate`` judges with them)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# What a build reads: the project's metadata and its packages (a copy, so the build leaves no
# build/ or egg-info behind in the working tree).
SOURCES = ("pyproject.toml", "README.md", "condgen", "service", "trainer")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        path = REPO_ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("condgen-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_carries_the_trainers_classifiers_and_the_static_files(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for dataset in ("mnist", "fashion-mnist"):
        assert f"trainer/classifiers/{dataset}.pt" in names
        assert f"trainer/classifiers/{dataset}.json" in names
    assert {"service/static/index.html", "service/static/playground.js"} <= names
    assert {"condgen/__init__.py", "condgen/cli.py", "condgen/client.py"} <= names
    assert not any(name.startswith(("tests/", "bench/")) for name in names)


def test_the_wheel_installs_the_condgen_command_and_its_client_dependency(wheel: zipfile.ZipFile) -> None:
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    assert "condgen = condgen.cli:main" in wheel.read(entry_points).decode()
    (metadata,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    requires = [
        line for line in wheel.read(metadata).decode().splitlines() if line.startswith("Requires-Dist:")
    ]
    assert any(line.startswith("Requires-Dist: httpx") for line in requires)
    assert not any(line.startswith("Requires-Dist: torch") and "extra" not in line for line in requires)
