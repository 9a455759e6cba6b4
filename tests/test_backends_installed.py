"""A session that names a backend must be able to import it (no silent skips)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from lsr import _compat
from tests.backends import ALL_BACKENDS, load_backend, selected_backends


@pytest.mark.parametrize("name", selected_backends())
def test_selected_backend_imports(name):
    backend = load_backend(name)
    array = backend.asarray([1.0, 2.0])
    assert backend.to_numpy(backend.xp.sum(array)) == 3.0


def test_unknown_backend_name_is_an_error(monkeypatch):
    monkeypatch.setenv("LSR_BACKENDS", "numpy,nonsense")
    with pytest.raises(ValueError, match="nonsense"):
        selected_backends()


def test_a_missing_backend_fails_the_session(tmp_path):
    """The check can fail: a session naming a backend that is absent errors, not skips."""
    missing = [name for name in ALL_BACKENDS if name not in selected_backends()]
    probe = (
        "import sys; sys.modules['{0}'] = None\n"
        "from tests.backends import load_backend\n"
        "load_backend('{0}')\n"
    ).format("torch" if not missing else missing[0])
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode != 0
    assert "ImportError" in result.stderr or "ModuleNotFoundError" in result.stderr


ENVIRONMENTS = Path(__file__).resolve().parent.parent / "backends"


def test_every_backend_has_a_pinned_environment_that_installs_it():
    """The registry's environment file exists and pins the backend's distribution."""
    for name, backend in _compat.BACKENDS.items():
        requirements = ENVIRONMENTS / f"{backend.environment}.txt"
        assert requirements.is_file(), f"{name}: no {requirements}"
        distribution = backend.module.replace("_", "-")
        # A CPU build may be pinned under its own name (tensorflow-cpu).
        assert {distribution, f"{distribution}-cpu"} & _pinned(requirements), (
            f"{name}: {requirements.name} does not install {distribution}"
        )


def test_every_environment_file_belongs_to_a_backend():
    """No stale environment: each file is some backend's, ``all`` (every backend), or
    ``trainer`` (Hugging Face's Trainer, a client of the PyTorch adapter, kept out of
    every other environment: its nox session only)."""
    named = {backend.environment for backend in _compat.BACKENDS.values()}
    files = {path.stem for path in ENVIRONMENTS.glob("*.txt")}
    assert files == named | {"all", "trainer"}
    assert _pinned(ENVIRONMENTS / "all.txt") >= set().union(
        *(_pinned(ENVIRONMENTS / f"{env}.txt") for env in named)
    )


def _pinned(requirements: Path) -> set[str]:
    """The distributions a requirements file installs, following ``-r`` includes."""
    names = set()
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r"):
            names |= _pinned(requirements.parent / line[2:].strip())
        elif line:
            names.add(re.split(r"[=<>!~\[; ]", line, maxsplit=1)[0].lower())
    return names
