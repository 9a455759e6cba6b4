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


def _session_strings(name: str) -> tuple[list[str], set[str]]:
    """The string constants in a nox session's function, and its tags."""
    tree = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            strings = [
                item.value
                for item in ast.walk(node)
                if isinstance(item, ast.Constant) and isinstance(item.value, str)
            ]
            tags = {
                tag.value
                for decorator in node.decorator_list
                if isinstance(decorator, ast.Call)
                for keyword in decorator.keywords
                if keyword.arg == "tags" and isinstance(keyword.value, ast.List)
                for tag in keyword.value.elts
                if isinstance(tag, ast.Constant)
            }
            return strings, tags
    raise AssertionError(f"noxfile.py has no session {name!r}")


def test_the_trainer_tests_run_in_their_own_environment_only():
    # tests/trainer imports transformers, which only backends/trainer.txt installs: the
    # "tests" sessions must not collect it, and the "trainer" session (part of CI) runs it.
    tests_strings, _ = _session_strings("tests")
    trainer_strings, trainer_tags = _session_strings("trainer")
    assert "--ignore=tests/trainer" in tests_strings
    assert "tests/trainer" in trainer_strings and "trainer" in trainer_strings
    assert "ci" in trainer_tags
    assert (ROOT / "tests" / "trainer" / "test_trainer.py").is_file()
    requirements = (ROOT / "backends" / "trainer.txt").read_text(encoding="utf-8").splitlines()
    assert "-r torch.txt" in requirements
    assert any(line.startswith("transformers==") for line in requirements)
