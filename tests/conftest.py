"""Backend selection for the whole suite (see tests/backends.py)."""

from __future__ import annotations

import importlib.util
import os

import pytest

from tests.backends import load_backend, selected_backends

SELECTED = selected_backends()

# Behaviour only one framework has lives in that framework's folder (tests/torch,
# tests/jax, tests/tensorflow, tests/keras), collected only in sessions that select the
# framework: no test is skipped for a missing framework, it is either collected and run
# or not part of this session at all. Keras tests need TensorFlow.
FRAMEWORK_FOLDERS = {"torch": ["torch"], "jax": ["jax"], "tensorflow": ["tensorflow", "keras"]}
collect_ignore = [
    folder
    for name, folders in FRAMEWORK_FOLDERS.items()
    if name not in SELECTED
    for folder in folders
]
# The figures' tests need matplotlib, which only the "all" environment installs.
if importlib.util.find_spec("matplotlib") is None:
    collect_ignore.append("test_metrics_plots.py")
collect_ignore_glob = []
if len(SELECTED) < 2:
    collect_ignore_glob.append("test_cross_backend*.py")
if not {"jax", "torch", "tensorflow"} & set(SELECTED):
    collect_ignore_glob += [
        "test_cross_backend_adapters.py",
        "test_adapter_edges.py",
        "test_per_position_smoothing_adapters.py",
    ]


def pytest_report_header(config):
    requested = os.environ.get("LSR_BACKENDS", "")
    return f"lsr backends under test: {', '.join(SELECTED)} (LSR_BACKENDS={requested!r})"


_LOADED = {}


def get_backend(name):
    if name not in _LOADED:
        _LOADED[name] = load_backend(name)
    return _LOADED[name]


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", SELECTED, indirect=True)


@pytest.fixture
def backend(request):
    """One selected backend; a selected backend that fails to import fails the test."""
    return get_backend(request.param)


@pytest.fixture
def xp(backend):
    return backend.xp
