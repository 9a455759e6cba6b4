"""Test matrix, lint, tutorial and benchmarks.

``nox -t ci`` is the README's test command: every backend's tests, the cross-backend
equality session, the distributed tests, lsr inside Hugging Face's Trainer, a smoke run
of the benchmark harness, the docs (every Python block runs, then the site builds), the
type check (mypy) and lint.
Each session installs lsr plus one pinned environment from ``backends/`` and names its
backends in ``LSR_BACKENDS``, so a backend that fails to install or import fails the
session instead of being skipped.

The environments take about 14 GB together (three of them hold TensorFlow, JAX and
PyTorch at 3.2 GB each), and the trainer session's 1.4 GB more. Where ``CI`` is set
(``.ci/run`` sets it), each session removes its own environment when it ends, so a run
needs room for one environment at a time.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
from collections.abc import Iterator
from typing import Any

import nox

nox.options.default_venv_backend = "venv"
nox.options.error_on_missing_interpreters = True
nox.options.sessions = ["tests", "distributed", "lint"]

PYPROJECT = nox.project.load_toml("pyproject.toml")
TEST_TOOLS = nox.project.dependency_groups(PYPROJECT, "test")
LINT_TOOLS = nox.project.dependency_groups(PYPROJECT, "lint")
DOCS_TOOLS = nox.project.dependency_groups(PYPROJECT, "docs")
TYPECHECK_TOOLS = nox.project.dependency_groups(PYPROJECT, "typecheck")


def _backend_registry() -> dict[str, Any]:
    """lsr's backend registry (``lsr._compat.BACKENDS``), loaded from its file: it needs
    only the standard library to import, so nox needs neither lsr nor its dependencies."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lsr", "_compat.py")
    spec = importlib.util.spec_from_file_location("lsr_backend_registry", path)
    assert spec is not None and spec.loader is not None, path
    registry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(registry)
    return registry.BACKENDS


# session parameter -> (requirements file in backends/, LSR_BACKENDS): one session per
# environment of the registry, running the backends it installs, and "all" (every one).
_REGISTRY = _backend_registry()
BACKENDS = {
    environment: (
        environment,
        ",".join(name for name, b in _REGISTRY.items() if b.environment == environment),
    )
    for environment in dict.fromkeys(b.environment for b in _REGISTRY.values())
}
BACKENDS["all"] = ("all", ",".join(_REGISTRY))


@contextlib.contextmanager
def _environment(session: nox.Session) -> Iterator[None]:
    """Run the session; on CI, delete its virtual environment afterwards (pass or fail)."""
    try:
        yield
    finally:
        location = getattr(session.virtualenv, "location", None)
        if os.environ.get("CI") and location and os.path.isdir(location):
            session.log(f"CI: removing {location} to free disk for the next session")
            shutil.rmtree(location, ignore_errors=True)


def _install(session: nox.Session, requirements: str, *extra: str) -> None:
    session.install("-r", f"backends/{requirements}.txt", *TEST_TOOLS, *extra)
    session.install("-e", ".", "--no-deps")


# What "tests(all)" runs: what no single environment can. The comparisons across
# frameworks in one process, the tests of the tutorial's and the figures' extras (tqdm,
# matplotlib: backends/all.txt only), and the checks whose subject is
# a process where every framework is installed (lsr and each adapter import only what
# they need). Every other test runs in the session of its own environment, on each of its
# backends; running it again here would only repeat it.
ALL_ENVIRONMENT_TESTS = (
    "tests/test_cross_backend.py",
    "tests/test_cross_backend_adapters.py",
    "tests/test_cross_backend_tutorial.py",
    "tests/test_tutorial_data.py",
    "tests/test_tutorial_report.py",
    # (Every other test of tests/test_metrics.py runs in each backend's own session.)
    "tests/test_metrics.py::test_plots_are_saved_as_png",
    "tests/test_metrics.py::test_import_lsr_metrics_imports_no_framework_numpy_or_matplotlib",
    "tests/test_metrics_plots.py",
    "tests/test_imports.py",
    "tests/test_architecture.py",
    "tests/test_backends_installed.py",
    # lsr.keras on Keras' JAX and PyTorch backends (tests/keras is collected only with
    # TensorFlow, these tests only with JAX or PyTorch as well).
    "tests/keras/test_keras_binary.py::test_other_keras_backends",
    "tests/keras/test_keras_loss.py::test_other_keras_backends_use_the_generic_core",
    # Non-finite logits through every mode of every framework, compared with each other
    # (each framework's own session compares its modes only).
    "tests/test_adapter_edges.py::test_non_finite_logits_give_the_same_values_in_every_mode",
    "tests/test_adapter_edges.py::test_non_finite_logits_give_the_same_binary_values_in_every_mode",
)


def _workers() -> int:
    """pytest's worker processes in the test sessions (pytest-xdist; ``-- -n 0`` runs in
    one process): one per CPU this process may use, at most 4, and at most one per 6 GiB
    of memory. Most tests spend their time in one thread (JAX's and TensorFlow's
    compilations, Python), so two workers use a two-core machine's second core: the jax
    session took 14 minutes instead of 22 on a 2-core AMD EPYC (one ad hoc run each).
    Each worker holds its own compiled programs (a JAX worker grew to 4.5 GB there)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        memory = 0
    by_memory = memory // (6 << 30) if memory > 0 else 1
    return max(1, min(4, cpus or 1, by_memory))


WORKERS = str(_workers())


@nox.session(tags=["ci"])
@nox.parametrize("backend", [nox.param(name, id=name) for name in BACKENDS])
def tests(session: nox.Session, backend: str) -> None:
    """The test suite on one environment's backends; "all": every backend in one
    environment, running ``ALL_ENVIRONMENT_TESTS`` (or the paths after ``--``)."""
    requirements, namespaces = BACKENDS[backend]
    paths = ALL_ENVIRONMENT_TESTS if backend == "all" and not session.posargs else ()
    with _environment(session):
        _install(session, requirements)
        session.run(
            "pytest",
            "--numprocesses",
            WORKERS,
            "--ignore=tests/distributed",
            "--ignore=tests/trainer",
            *paths,
            *session.posargs,
            env={
                "LSR_BACKENDS": namespaces,
                "LSR_MNIST_DIR": os.environ.get("LSR_MNIST_DIR", ""),
            },
        )


@nox.session(tags=["ci"])
def distributed(session: nox.Session) -> None:
    """Multi-device tests: torch.distributed (gloo), 8 simulated JAX CPU devices, tf.distribute."""
    with _environment(session):
        _install(session, "all")
        session.run(
            "pytest",
            "tests/distributed",
            *session.posargs,
            env={"LSR_BACKENDS": "numpy,torch,jax,tensorflow"},
        )


@nox.session(tags=["ci"])
def trainer(session: nox.Session) -> None:
    """lsr's fused loss as the loss of Hugging Face transformers' ``Trainer``: the
    Trainer's own label-smoothed losses, less memory, and the recipe of
    docs/large_vocabularies.md. transformers lives in this environment only
    (``backends/trainer.txt``), so the other sessions ignore tests/trainer."""
    with _environment(session):
        _install(session, "trainer")
        session.run("pytest", "tests/trainer", *session.posargs, env={"LSR_BACKENDS": "torch"})


@nox.session(tags=["ci"])
def lint(session: nox.Session) -> None:
    session.install(*LINT_TOOLS)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(tags=["ci"])
def typecheck(session: nox.Session) -> None:
    """mypy over ``lsr/``, configured by ``[tool.mypy]`` in pyproject.toml: zero errors.

    Every backend is installed (``backends/all.txt``), so mypy reads the frameworks' own
    annotations (and typeshed's stubs for TensorFlow and tqdm) instead of taking every
    framework call for ``Any``. Arguments after ``--`` replace ``lsr`` (``-- lsr/_core``).
    """
    with _environment(session):
        _install(session, "all", *TYPECHECK_TOOLS)
        cache = os.path.join(session.create_tmp(), "mypy_cache")
        session.run("mypy", "--cache-dir", cache, *(session.posargs or ["lsr"]))


@nox.session(tags=["ci"])
def docs(session: nox.Session) -> None:
    """Run every Python block of README.md and docs/, check their tables, build the site.

    Every backend is installed (``backends/all.txt``), so a block that needs a framework
    runs instead of being skipped, and mkdocstrings can read every adapter. The site is
    built with warnings as errors into a temporary directory; ``mkdocs build`` alone
    writes ``build/site/``. The pages' interpreters run side by side, as many at once as
    the test sessions have workers. Arguments after ``--`` go to ``tools/check_docs.py``
    (``-- docs/torch.md`` checks one page, ``-- --no-run`` only the static checks,
    ``-- --jobs 1`` one interpreter at a time).
    """
    with _environment(session):
        _install(session, "all", *DOCS_TOOLS)
        session.run(
            "python",
            "tools/check_docs.py",
            "--jobs",
            WORKERS,
            *session.posargs,
            env={"LSR_MNIST_DIR": os.environ.get("LSR_MNIST_DIR", "")},
        )
        site = os.path.join(session.create_tmp(), "site")
        session.run("mkdocs", "build", "--strict", "--site-dir", site)


@nox.session
def tutorial(session: nox.Session) -> None:
    """The main job: the cleverhans MNIST tutorial on JAX, PyTorch and TensorFlow."""
    _install(session, "all")
    # cleverhans' own test of this tutorial: 5,000 training images, 2 epochs, with the
    # training-slice accuracies (--testing). Any flags after `--` replace these.
    args = session.posargs or [
        "--backend",
        "all",
        "--train_end",
        "5000",
        "--nb_epochs",
        "2",
        "--testing",
    ]
    session.run(
        "python",
        "-m",
        "lsr.tutorial",
        *args,
        env={"LSR_MNIST_DIR": os.environ.get("LSR_MNIST_DIR", "")},
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Speed and memory against each framework's own loss; writes benchmarks/results/.

    ``nox -s bench`` is the full run (about half an hour on 2 cores); arguments after
    ``--`` go to ``python -m benchmarks.run`` (``-- --size quick``, ``-- --backend jax``).
    """
    _install(session, "all")
    session.run("python", "-m", "benchmarks.run", *session.posargs)


@nox.session(name="bench_smoke", tags=["ci"])
def bench_smoke(session: nox.Session) -> None:
    """The benchmark harness end to end on tiny sizes (a few minutes): every backend,
    loss and probe runs, results go to a temporary directory. Nothing is asserted on
    timings (the backends run side by side, ``--jobs``); the run fails only when lsr or
    a whole backend fails."""
    with _environment(session):
        _install(session, "all")
        out = session.create_tmp()
        session.run(
            "python", "-m", "benchmarks.run", "--size", "smoke", "--jobs", WORKERS, "--out", out
        )
