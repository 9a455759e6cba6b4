"""The nox sessions together run every test file: ``tests(all)`` runs only what no single
environment can (``ALL_ENVIRONMENT_TESTS`` in noxfile.py), so a file that only a
several-backend or all-extras session collects must be on that list."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _all_environment_tests() -> tuple[str, ...]:
    tree = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "ALL_ENVIRONMENT_TESTS"
            for target in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError("noxfile.py no longer defines ALL_ENVIRONMENT_TESTS")


def test_every_listed_file_exists():
    listed = _all_environment_tests()
    assert len(listed) == len(set(listed))
    missing = [path for path in listed if not (ROOT / path.split("::")[0]).is_file()]
    assert not missing, missing


def test_files_only_the_all_environment_collects_are_listed():
    # tests/conftest.py collects these only with several backends, or with matplotlib.
    needed = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "tests").glob("test_cross_backend*.py")
    }
    needed.add("tests/test_metrics_plots.py")
    # Keras on its other backends: tests/keras needs TensorFlow, these JAX or PyTorch too.
    needed.add("tests/keras/test_keras_binary.py::test_other_keras_backends")
    needed.add("tests/keras/test_keras_loss.py::test_other_keras_backends_use_the_generic_core")
    assert len(needed) >= 6
    assert needed <= set(_all_environment_tests()), needed - set(_all_environment_tests())
