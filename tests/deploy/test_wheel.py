"""The wheel as a user gets it: built from this checkout, installed non-editable into a fresh venv,
then `genqueue migrate` and `genqueue demo --jobs 3` from an empty directory. This catches what an
editable install hides: a missing migration, dashboard file or template, and any top-level module
other than `genqueue` landing in site-packages."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from tests.e2e.e2e_support import clean_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None,
         timeout: float = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{argv}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # From a copy, so setuptools' build/ folder never lands in the checkout (where ruff, mypy and
    # pytest would see a second copy of the code).
    src = tmp_path_factory.mktemp("src") / "genqueue"
    shutil.copytree(REPO, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "__pycache__", ".genqueue", "data", ".*_cache"))
    # Built in isolation from PyPI's setuptools, as `pip install .` or a release build would.
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)], cwd=out)
    [built] = out.glob("genqueue-*.whl")
    return built


def test_the_wheel_holds_one_top_level_package_with_its_data_files(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith((".dist-info", ".data"))}
    assert top == {"genqueue"}, top
    for needed in ("genqueue/models/migrations/env.py", "genqueue/models/migrations/script.py.mako",
                   "genqueue/models/migrations/versions/0003_status_check_create_in_flight.py",
                   "genqueue/api/dashboard/static/index.html"):
        assert needed in names, needed
    assert not [n for n in names if "/tests/" in n or n.startswith("tests/")]


def test_installed_wheel_migrates_and_runs_the_demo_from_an_empty_directory(wheel: Path, tmp_path: Path,
                                                                             redis_url: str) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = str(env_dir / "bin" / "python")
    _run([py, "-m", "pip", "install", "-q", str(wheel)], cwd=tmp_path, timeout=900)
    # Nothing of this checkout is importable from there: the code comes from the wheel.
    where = _run([py, "-c", "import genqueue, sys; print(genqueue.__file__)"], cwd=tmp_path).stdout
    assert str(env_dir) in where and str(REPO) not in where
    empty = tmp_path / "empty"
    empty.mkdir()
    env = clean_env(REDIS_URL=redis_url)
    genqueue = str(env_dir / "bin" / "genqueue")
    _run([genqueue, "migrate"], cwd=empty, env=env, timeout=120)
    demo = _run([genqueue, "demo", "--jobs", "3"], cwd=empty, env=env, timeout=300)
    assert "succeeded=3" in demo.stdout, demo.stdout[-2000:]
    assert len(list((empty / ".genqueue" / "outputs").rglob("*.png"))) == 3
