"""What the tutorial prints and draws says which data it used; logs stay readable.

The command line runs for real here (data loading, driver, tables, calibration section,
figures, JSON report) on every backend name, with the frameworks replaced by a small
NumPy stand-in, so these tests need no framework and take seconds. They check that a run
on the scikit-learn digits fallback marks every printed table and every figure "NOT
MNIST", that the same run on MNIST files does not, that a note every backend would
repeat is printed once, that ``mnist_tutorial`` called from Python announces the
fallback, and that progress bars are drawn only on a terminal.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib.util
import io
import json
import re
import struct
import sys
import types

import numpy as np
import pytest

from lsr import metrics
from lsr.tutorial import __main__ as command_line
from lsr.tutorial import _calibration, _distillation, _driver, data
from lsr.tutorial.data import TEST_IMAGES, TEST_LABELS

NOT_MNIST = "NOT MNIST"
HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
HAVE_TQDM = importlib.util.find_spec("tqdm") is not None


class FakeTrainer:
    """The ``Trainer`` protocol in NumPy: fixed random features, the driver's dense layer,
    no learning. Enough for the driver, the calibration section and the figures."""

    loss_name = "fake"

    def __init__(self, params, **options):
        self.kernel = params["dense/kernel"]
        rng = np.random.default_rng(options["seed"])
        self.projection = rng.standard_normal((28 * 28, self.kernel.shape[0])) / 28.0

    def train_step(self, x, y, adversarial):
        return 0.0

    def distill_step(self, x, teacher_logits, temperature):
        return 0.0

    def features(self, x):
        return np.maximum(x.reshape(len(x), -1) @ self.projection, 0.0)

    def logits(self, x):
        return self.features(x) @ self.kernel

    def fgsm(self, x):
        return np.clip(x + 0.3 * np.sign(x - 0.5), 0.0, 1.0)

    def dense_kernel(self):
        return self.kernel


FAKE_FRAMEWORK = types.SimpleNamespace(
    create=lambda params, **options: FakeTrainer(params, **options),
    versions=lambda: {"fake": "1"},
)


def _fake_backend_module(backend):
    _driver.check_backend(backend)
    return FAKE_FRAMEWORK


def _write_idx(path, array):
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.tobytes()))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _run_command_line(monkeypatch, tmp_path, data_dir):
    """``python -m lsr.tutorial --backend all`` on the fake frameworks: what it printed on
    stdout and stderr, the suptitle of every figure it saved, and its JSON report."""
    monkeypatch.setattr(_driver, "backend_module", _fake_backend_module)
    monkeypatch.setattr(_calibration, "backend_module", _fake_backend_module)
    monkeypatch.setattr(_distillation, "backend_module", _fake_backend_module)
    figure_titles = []
    if HAVE_MATPLOTLIB:
        from matplotlib.figure import Figure

        save = Figure.savefig

        def recording_savefig(figure, path, *args, **kwargs):
            figure_titles.append(figure.get_suptitle())
            return save(figure, path, *args, **kwargs)

        monkeypatch.setattr(Figure, "savefig", recording_savefig)
    out_dir = tmp_path / "out"
    stdout, stderr = io.StringIO(), io.StringIO()  # not terminals, as in a CI log
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = command_line.main(
            [
                "--backend",
                "all",
                "--data_dir",
                str(data_dir),
                "--no-download",
                "--train_end",
                "64",
                "--nb_epochs",
                "2",
                "--nb_filters",
                "4",
                "--out_dir",
                str(out_dir),
            ]
        )
    assert status == 0
    report = json.loads((out_dir / "tutorial_report.json").read_text())
    return stdout.getvalue(), stderr.getvalue(), figure_titles, report


def _line_above_each_table(stdout):
    """The data line printed above each markdown table (the line before the blank one)."""
    lines = stdout.splitlines()
    headers = [i for i, line in enumerate(lines) if line.startswith("| field |")]
    headers += [i for i, line in enumerate(lines) if line.startswith("| backend | model |")]
    headers += [i for i, line in enumerate(lines) if line.startswith("| backend | teacher |")]
    assert len(headers) == 3, stdout  # the comparison, calibration and distillation tables
    for index in headers:
        assert index >= 2 and lines[index - 1] == "", stdout
    return [lines[index - 2] for index in headers]


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """A run with no MNIST anywhere: the loader falls back to scikit-learn's digits."""
    tmp_path = tmp_path_factory.mktemp("digits_run")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.delenv("LSR_MNIST_DIR", raising=False)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        return _run_command_line(monkeypatch, tmp_path, tmp_path / "no-mnist-here")


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory):
    """A run on (small, made-up) t10k files whose checksums the loader is told to accept."""
    tmp_path = tmp_path_factory.mktemp("mnist_run")
    directory = tmp_path / "mnist"
    directory.mkdir()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(200, 28, 28))
    labels = np.arange(200) % 10
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, array in ((TEST_IMAGES, images), (TEST_LABELS, labels)):
            monkeypatch.setitem(data.SHA256, name, _write_idx(directory / name, array))
        return _run_command_line(monkeypatch, tmp_path, directory)


def test_digits_run_marks_both_printed_tables(digits_run):
    stdout, _, _, report = digits_run
    for line in _line_above_each_table(stdout):
        assert line.startswith("data: ") and NOT_MNIST in line, line
    assert NOT_MNIST in report["data"]
    assert NOT_MNIST in report["table"].splitlines()[0]
    for section in report["calibration"].values():
        assert NOT_MNIST in section["data"]
    for section in report["distillation"].values():
        assert NOT_MNIST in section["data"]


def test_mnist_run_tables_name_mnist_without_the_mark(mnist_run):
    stdout, stderr, _, report = mnist_run
    for line in _line_above_each_table(stdout):
        assert line.startswith("data: MNIST") and NOT_MNIST not in line, line
    assert NOT_MNIST not in stdout + stderr
    assert report["reports"]["jax"]["data_source"] == "mnist-t10k-split"


def test_digits_run_says_so_once_and_prints_each_note_once(digits_run):
    _, stderr, _, _ = digits_run
    lines = stderr.splitlines()
    fallback = [line for line in lines if "scikit-learn's 8x8 handwritten digits" in line]
    assert len(fallback) == 1, stderr
    assert NOT_MNIST in fallback[0]
    # The default test_end (10000) is beyond the digits' test split: one note for the
    # run, although three backends clamp it.
    assert sum("test_end=10000" in line for line in lines) == 1, stderr
    assert sum(line.startswith("[lsr.tutorial] data: ") for line in lines) == 1, stderr
    assert sum("running the tutorial" in line for line in lines) == 3, stderr


def test_progress_bars_stay_out_of_logs(digits_run):
    """--progress is on by default; stderr here is not a terminal, so no bar is drawn."""
    _, stderr, _, _ = digits_run
    assert "\r" not in stderr
    assert "it/s" not in stderr and "%|" not in stderr


if HAVE_MATPLOTLIB:

    def test_digits_run_marks_every_figure(digits_run):
        _, _, figure_titles, report = digits_run
        saved = [
            path
            for section in report["calibration"].values()
            for path in section["figures"].values()
        ]
        assert len(figure_titles) == len(saved) == 2 * len(_driver.BACKENDS)
        for title in figure_titles:
            assert NOT_MNIST in title, title

    def test_mnist_run_figures_name_mnist(mnist_run):
        _, _, figure_titles, _ = mnist_run
        assert len(figure_titles) == 2 * len(_driver.BACKENDS)
        for title in figure_titles:
            assert title.startswith("data: MNIST") and NOT_MNIST not in title, title


def test_load_mnist_announces_the_fallback_without_a_log(tmp_path, capsys):
    loaded = data.load_mnist(tmp_path / "empty", download_missing=False)
    captured = capsys.readouterr()
    assert loaded.source == "sklearn-digits"
    lines = captured.err.splitlines()
    assert len(lines) == 1 and NOT_MNIST in lines[0], captured.err
    assert captured.out == ""
    assert NOT_MNIST in loaded.headline


def test_mnist_tutorial_from_python_says_what_it_used(tmp_path, capsys, monkeypatch):
    from lsr.tutorial import mnist_tutorial

    monkeypatch.setattr(_driver, "backend_module", _fake_backend_module)
    report = mnist_tutorial(
        "torch", data_dir=tmp_path / "empty", download=False, train_end=64, nb_filters=4
    )
    err = capsys.readouterr().err
    assert report.data_source == "sklearn-digits"
    assert sum(NOT_MNIST in line for line in err.splitlines()) >= 2, err  # fallback + data
    assert sum("test_end=10000" in line for line in err.splitlines()) == 1, err


def test_the_default_targets_are_cleverhans_v3_1_0(tmp_path, capsys, monkeypatch):
    """cleverhans v3.1.0's mnist_tutorial_tf.py: CrossEntropy(model, smoothing=0.1),
    whose targets are y - 0.1 (y - 1/10): 0.91 on the true class ("uniform")."""
    from lsr.tutorial import mnist_tutorial

    created = []

    def create(params, **options):
        created.append(options)
        return FakeTrainer(params, **options)

    monkeypatch.setattr(_driver, "backend_module", _fake_backend_module)
    monkeypatch.setattr(FAKE_FRAMEWORK, "create", create)
    report = mnist_tutorial("jax", data_dir=tmp_path / "empty", download=False, train_end=64)
    assert report.prior == "uniform" and report.label_smoothing == 0.1
    assert created and all(
        options["prior"] == "uniform" and options["label_smoothing"] == 0.1 for options in created
    )
    assert command_line.build_parser().parse_args([]).prior == "uniform"
    capsys.readouterr()


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_no_progress_bar_when_stderr_is_not_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert _driver._Progress(True, "jax")("training", 3) is None


if HAVE_TQDM:

    def test_progress_bar_on_a_terminal(monkeypatch):
        terminal = FakeTerminal()
        monkeypatch.setattr(sys, "stderr", terminal)
        assert _driver._Progress(False, "jax")("training", 3) is None  # not asked for
        bar = _driver._Progress(True, "jax")("training", 3)
        assert bar is not None
        assert list(bar(range(3))) == [0, 1, 2]
        assert "jax: training" in terminal.getvalue()


def test_mnist_run_reports_the_distillation_section(mnist_run):
    """Every backend's section: the seeds, the scale, errors in [0, 1], the proxy at most
    its bound, and summaries of every seed's values; the table says how small it is."""
    stdout, _, _, report = mnist_run
    assert set(report["distillation"]) == set(_driver.BACKENDS)
    for section in report["distillation"].values():
        assert section["seeds"] == [_driver.DEFAULT_SEED + i for i in range(3)]
        assert "t10k-only split" in section["scale"] and "small" in section["scale"]
        bound = section["mutual_information"]["upper_bound_nats"]
        for run in section["runs"]:
            for name in ("hard", "smoothed"):
                assert 0 <= run[name]["teacher_error"] <= 1
                assert 0 <= run[name]["student_error"] <= 1
                assert -0.1 < run[name]["mutual_information"] <= bound + 1e-9
        for name in ("hard", "smoothed", "smoothed_minus_hard"):
            for entry in section["summary"][name].values():
                assert len(entry["values"]) == 3
                assert entry["mean"] == pytest.approx(np.mean(entry["values"]))
                assert entry["std"] == pytest.approx(np.std(entry["values"], ddof=1))
    assert "t10k-only split" in stdout
    assert sum("| smoothing - hard (paired) |" in line for line in stdout.splitlines()) == 3


def test_each_ece_of_the_calibration_table_has_its_bootstrap_interval(digits_run):
    stdout, _, _, report = digits_run
    for section in report["calibration"].values():
        settings = section["ece_interval"]
        assert (settings["confidence"], settings["n_resamples"]) == (0.9, 1000)
        for result in section["results"].values():
            low, high = result["ece_interval"]
            assert np.isfinite(low) and np.isfinite(high) and low <= high
    lines = stdout.splitlines()
    (start,) = [i for i, line in enumerate(lines) if line.startswith("| backend | model |")]
    assert "| ECE [90% interval] |" in lines[start]
    # The calibration table's rows: those after its header and separator, up to the first
    # line that is not a table row (the distillation table, later, has its own rows).
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append(line)
    assert all(re.match(r"\| (jax|torch|tensorflow) \| ", row) for row in rows), rows
    assert len(rows) == 4 * len(_driver.BACKENDS)
    for row in rows:
        assert re.search(r"\| \d\.\d{4} \[-?\d\.\d{4}, -?\d\.\d{4}\] \|", row), row


def test_the_calibration_scores_are_the_metrics_interval():
    rng = np.random.default_rng(0)
    logits = 3.0 * rng.normal(size=(300, 10))
    labels = rng.integers(0, 10, size=300)
    scores = _calibration._scores(logits, labels)
    ece, low, high = metrics.calibration_error_interval(
        logits, labels, n_bins=15, confidence=0.9, n_resamples=1000, seed=0
    )
    assert scores["ece"] == float(ece)
    assert scores["ece_interval"] == [float(low), float(high)]
    section = {"data": "data: test", "results": {name: scores for name, _ in _calibration.VARIANTS}}
    table = _calibration.calibration_table({"numpy": section})
    assert f"| {float(ece):.4f} [{float(low):.4f}, {float(high):.4f}] |" in table
