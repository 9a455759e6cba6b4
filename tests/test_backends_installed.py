"""A session that names a backend must be able to import it (no silent skips)."""

import subprocess
import sys

import pytest

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
