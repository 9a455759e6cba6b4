"""The one driver of the tutorial: data, initial weights, batch order, evaluation, report.

The per-framework modules (``_jax``, ``_torch``, ``_tensorflow``) only build the network,
its training step and the FGSM attack; everything that decides *what* is computed lives
here, once. The three backends therefore start from the same initial weights (drawn here
with NumPy from cleverhans' ``HeReLuNormalInitializer`` distribution: normal with standard
deviation 1/sqrt(fan_in), zero biases) and see the same batches in the same order, so
their reports differ only by each framework's floating-point arithmetic.

(Over 500 lines on purpose: splitting what decides the experiment over several modules
would bring back the per-framework drift this module exists to prevent.)
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import platform
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import numpy as np

from lsr._validation import check_choice, check_fraction, check_positive_int
from lsr.tutorial.data import MnistData, load_mnist

BACKENDS = ("jax", "torch", "tensorflow")
PRIORS = ("uniform", "others")
# cleverhans v3.1.0's CrossEntropy(model, smoothing=0.1): y - 0.1 (y - 1/10), 0.91 on the
# true class. "others" gives Y_train.clip(0.1 / 9, 0.9), the targets up to v2.1.0.
DEFAULT_PRIOR = "uniform"
NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28, 1)
# cleverhans' fgsm_params in mnist_tutorial_tf.py.
FGSM_PARAMS = {"eps": 0.3, "clip_min": 0.0, "clip_max": 1.0}
DEFAULT_SEED = 20170830  # cleverhans seeded its batch order with RandomState([2017, 8, 30]).
ACCURACY_FIELDS = (
    "clean_train_clean_eval",
    "clean_train_adv_eval",
    "adv_train_clean_eval",
    "adv_train_adv_eval",
    "train_clean_train_clean_eval",
    "train_clean_train_adv_eval",
    "train_adv_train_clean_eval",
    "train_adv_train_adv_eval",
)


class Trainer(Protocol):
    """What a backend module's ``create(...)`` returns. Arrays in and out are NumPy:
    images (N, 28, 28, 1) float32 in [0, 1], labels (N,) int64."""

    loss_name: str

    def train_step(self, x: np.ndarray, y: np.ndarray, adversarial: bool) -> Any:
        """One Adam step on the batch; returns the loss (any scalar ``float()`` accepts)."""

    def distill_step(self, x: np.ndarray, teacher_logits: np.ndarray, temperature: float) -> Any:
        """One Adam step on the backend adapter's ``distill_loss`` (mean over the batch)
        against the teacher's (N, 10) float32 logits at ``temperature``; returns the loss."""

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(N, 10) logits."""

    def features(self, x: np.ndarray) -> np.ndarray:
        """(N, 2 * nb_filters) penultimate activations (the input of the last layer)."""

    def fgsm(self, x: np.ndarray) -> np.ndarray:
        """FGSM examples with ``FGSM_PARAMS``, labelled by the model's own predictions."""

    def dense_kernel(self) -> np.ndarray:
        """The last layer's kernel, shape (2 * nb_filters, 10)."""


class Steps(Protocol):
    """What ``train`` needs: a ``Trainer``, or a wrapper that steps on other targets (the
    distillation section's student, whose "labels" are a teacher's logits)."""

    def train_step(self, x: np.ndarray, y: np.ndarray, adversarial: bool) -> Any: ...


@dataclasses.dataclass
class TutorialReport:
    """cleverhans' ``AccuracyReport`` fields (None when not computed), plus provenance.

    The ``train_*`` fields are filled only with ``testing=True``; the ``clean_train_*``
    fields only with ``clean_train=True``.
    """

    backend: str
    clean_train_clean_eval: float | None = None
    clean_train_adv_eval: float | None = None
    adv_train_clean_eval: float | None = None
    adv_train_adv_eval: float | None = None
    train_clean_train_clean_eval: float | None = None
    train_clean_train_adv_eval: float | None = None
    train_adv_train_clean_eval: float | None = None
    train_adv_train_adv_eval: float | None = None
    label_smoothing: float = 0.1
    prior: str = DEFAULT_PRIOR
    loss: str = ""
    data_source: str = ""
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    epoch_losses: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    timings_s: dict[str, float] = dataclasses.field(default_factory=dict)
    environment: dict[str, str] = dataclasses.field(default_factory=dict)

    def accuracies(self) -> dict[str, float | None]:
        return {name: getattr(self, name) for name in ACCURACY_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_backend(backend: Any) -> str:
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(
            f"`backend` must be one of {', '.join(map(repr, BACKENDS))}. Received: "
            f"backend={backend!r}"
        )
    return backend


def backend_module(backend: str) -> Any:
    """Import the backend's module only now: ``import lsr.tutorial`` imports no framework."""
    return importlib.import_module(f"lsr.tutorial._{check_backend(backend)}")


def initial_params(seed: int, model_index: int, nb_filters: int) -> dict[str, np.ndarray]:
    """cleverhans' basic CNN's initial weights in TensorFlow's layout.

    Conv kernels are (height, width, in, out), the dense kernel (in, out); weights are
    normal with standard deviation 1/sqrt(fan_in) (``HeReLuNormalInitializer``:
    ``rsqrt(prod(shape[:-1]))``), biases zero. ``model_index`` separates the clean and
    the adversarially trained model, which cleverhans initialises independently.
    """
    rng = np.random.default_rng([seed, model_index])
    shapes = {
        "conv1": (8, 8, IMAGE_SHAPE[-1], nb_filters),
        "conv2": (6, 6, nb_filters, 2 * nb_filters),
        "conv3": (5, 5, 2 * nb_filters, 2 * nb_filters),
        # 28 -> 14 ("same", stride 2) -> 5 ("valid" 6x6, stride 2) -> 1 ("valid" 5x5): the
        # flattened features are the 2 * nb_filters channels of a 1 x 1 map, so the
        # flatten order (NHWC or NCHW) is the same in every framework.
        "dense": (2 * nb_filters, NUM_CLASSES),
    }
    params = {}
    for name, shape in shapes.items():
        fan_in = math.prod(shape[:-1])
        params[f"{name}/kernel"] = (rng.standard_normal(shape) / math.sqrt(fan_in)).astype(
            np.float32
        )
        params[f"{name}/bias"] = np.zeros(shape[-1], dtype=np.float32)
    return params


def epoch_order(rng: np.random.Generator, size: int, batch_size: int) -> np.ndarray:
    """cleverhans' ``train`` order: every index once, plus random repeats up to a multiple
    of ``batch_size`` (so every batch is full), shuffled."""
    extra = (-size) % batch_size
    order = np.concatenate([np.arange(size), rng.integers(0, size, size=extra)])
    return rng.permutation(order)


def fixed_batches(x: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, int]]:
    """Batches of exactly ``batch_size`` rows (the last padded by repeating its final row),
    with the number of real rows, so compiled functions see a single shape."""
    for start in range(0, len(x), batch_size):
        batch = x[start : start + batch_size]
        real = len(batch)
        if real < batch_size:
            batch = np.concatenate([batch, np.repeat(batch[-1:], batch_size - real, axis=0)])
        yield batch, real


def batched_map(
    fn: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    batch_size: int,
    progress: Callable[[Any], Any] | None = None,
) -> np.ndarray:
    """``fn`` applied in fixed-size batches, concatenated."""
    batches = fixed_batches(x, batch_size)
    if progress is not None:
        batches = progress(batches)
    outputs = [np.asarray(fn(batch))[:real] for batch, real in batches]
    return np.concatenate(outputs) if outputs else np.zeros((0,))


class RunLog:
    """The tutorial's log: ``[lsr.tutorial] message`` lines on stderr, each distinct line
    once per run.

    A note that every backend would repeat (a clamped slice, the data used) is printed
    once, not once per backend; lines that name their backend stay distinct.
    """

    def __init__(self) -> None:
        self._printed: set[str] = set()

    def __call__(self, message: str) -> None:
        if message in self._printed:
            return
        self._printed.add(message)
        print(f"[lsr.tutorial] {message}", file=sys.stderr, flush=True)


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is an interactive terminal (False for files, pipes, CI logs)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, OSError, ValueError):
        return False


class _Progress:
    """tqdm progress bars when asked for and stderr (where they are drawn) is a terminal,
    else nothing: redirected to a file or a CI log, each redraw would add a line of
    carriage returns. tqdm is imported only when bars are drawn."""

    def __init__(self, enabled: bool, backend: str) -> None:
        self.stream = sys.stderr
        self.enabled = enabled and is_terminal(self.stream)
        self.backend = backend

    def __call__(self, description: str, total: int) -> Callable[[Any], Any] | None:
        if not self.enabled:
            return None
        from tqdm.auto import tqdm

        return lambda iterable: tqdm(
            iterable,
            total=total,
            desc=f"{self.backend}: {description}",
            leave=False,
            file=self.stream,
        )


def accuracy(
    trainer: Trainer,
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    *,
    adversarial: bool,
    progress: _Progress,
    description: str,
) -> float:
    """Top-1 accuracy on clean inputs or on FGSM examples made against ``trainer``."""
    total = math.ceil(len(x) / batch_size)
    if adversarial:
        predict = lambda batch: trainer.logits(trainer.fgsm(batch))  # noqa: E731
    else:
        predict = trainer.logits
    logits = batched_map(predict, x, batch_size, progress(description, total))
    return float(np.mean(np.argmax(logits, axis=-1) == y))


def train(
    trainer: Steps,
    x: np.ndarray,
    y: np.ndarray,
    *,
    nb_epochs: int,
    batch_size: int,
    rng: np.random.Generator,
    adversarial: bool,
    progress: _Progress,
    description: str,
) -> list[float]:
    """``nb_epochs`` epochs of Adam steps; returns the mean training loss of each epoch."""
    losses = []
    for epoch in range(nb_epochs):
        order = epoch_order(rng, len(x), batch_size)
        starts = range(0, len(order), batch_size)
        bar = progress(f"{description} epoch {epoch + 1}/{nb_epochs}", len(starts))
        if bar is not None:
            starts = bar(starts)
        step_losses = []
        for start in starts:
            index = order[start : start + batch_size]
            step_losses.append(trainer.train_step(x[index], y[index], adversarial))
        losses.append(float(np.mean([float(value) for value in step_losses])))
    return losses


def _slice(name: str, start: int, end: int, available: int, notes: list[str]) -> slice:
    if not 0 <= start < available:
        raise ValueError(
            f"`{name}_start` must index into the {name} split, which has {available} "
            f"examples. Received: {name}_start={start}"
        )
    if end <= start:
        raise ValueError(
            f"`{name}_end` must be greater than `{name}_start` ({start}). Received: "
            f"{name}_end={end}"
        )
    if end > available:
        notes.append(
            f"{name}_end={end} asked for more than the {available} examples of the {name} "
            f"split: used {name}[{start}:{available}]."
        )
        end = available
    return slice(start, end)


def _check_options(options: dict[str, Any]) -> None:
    for name in ("nb_epochs", "batch_size", "nb_filters"):
        check_positive_int(name, options[name])
    for name in ("train_start", "train_end", "test_start", "test_end", "seed"):
        check_positive_int(name, options[name], minimum=0)
    check_fraction("label_smoothing", options["label_smoothing"])
    check_choice("prior", options["prior"], PRIORS)
    if not (options["clean_train"] or options["adv_train"]):
        raise ValueError(
            "At least one of `clean_train` and `adv_train` must be True: there is nothing "
            "to train. Received: clean_train=False, adv_train=False"
        )
    rate = options["learning_rate"]
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
        raise ValueError(f"`learning_rate` must be a positive number. Received: {rate!r}")


def _environment(module: Any) -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}",
        "processor": platform.processor() or "unknown",
        "numpy": np.__version__,
        **module.versions(),
    }


@dataclasses.dataclass
class TutorialRun:
    """A report plus what the calibration section reuses from the run."""

    report: TutorialReport
    data: MnistData
    train_slice: slice
    test_slice: slice
    clean_model: Trainer | None


def run_tutorial(
    backend: str,
    *,
    train_start: int = 0,
    train_end: int = 60000,
    test_start: int = 0,
    test_end: int = 10000,
    nb_epochs: int = 6,
    batch_size: int = 128,
    learning_rate: float = 0.001,
    clean_train: bool = True,
    testing: bool = False,
    backprop_through_attack: bool = False,
    nb_filters: int = 64,
    label_smoothing: float = 0.1,
    prior: str = DEFAULT_PRIOR,
    data_dir: Any = None,
    seed: int = DEFAULT_SEED,
    adv_train: bool = True,
    download: bool = True,
    progress: bool = False,
    data: MnistData | None = None,
    log: Callable[[str], None] | None = None,
) -> TutorialRun:
    """``mnist_tutorial`` returning the trained clean model too (see there)."""
    options = dict(locals())
    check_backend(backend)
    _check_options(options)
    module = backend_module(backend)
    started = time.perf_counter()
    say = RunLog() if log is None else log
    if data is None:
        data = load_mnist(data_dir, download_missing=download, log=say)
    say(data.headline)
    notes: list[str] = []
    train_slice = _slice("train", train_start, train_end, len(data.x_train), notes)
    test_slice = _slice("test", test_start, test_end, len(data.x_test), notes)
    x_train, y_train = data.x_train[train_slice], data.y_train[train_slice]
    x_test, y_test = data.x_test[test_slice], data.y_test[test_slice]
    for note in notes:
        say(note)

    report = TutorialReport(
        backend=backend,
        label_smoothing=float(label_smoothing),
        prior=prior,
        data_source=data.source,
        data={
            **data.description,
            "train_used": f"train split [{train_slice.start}:{train_slice.stop}] "
            f"({len(x_train)} examples)",
            "test_used": f"test split [{test_slice.start}:{test_slice.stop}] "
            f"({len(x_test)} examples)",
            "notes": notes,
        },
        settings={
            name: options[name]
            for name in (
                "nb_epochs",
                "batch_size",
                "learning_rate",
                "clean_train",
                "testing",
                "backprop_through_attack",
                "nb_filters",
                "seed",
                "adv_train",
            )
        }
        | {"fgsm": dict(FGSM_PARAMS), "adversarial_loss": "0.5 * clean + 0.5 * adversarial"},
        environment=_environment(module),
    )
    progress_bar = _Progress(progress, backend)
    # One generator for the batch order of both trainings, as cleverhans shares its rng.
    rng = np.random.default_rng(seed)
    make = lambda index: module.create(  # noqa: E731
        initial_params(seed, index, nb_filters),
        learning_rate=learning_rate,
        label_smoothing=label_smoothing,
        prior=prior,
        backprop_through_attack=backprop_through_attack,
        seed=seed,
    )

    def evaluate(trainer, prefix, x, y, split):
        for adversarial, kind in ((False, "clean"), (True, "adv")):
            value = accuracy(
                trainer,
                x,
                y,
                batch_size,
                adversarial=adversarial,
                progress=progress_bar,
                description=f"{prefix} {kind} eval on {split}",
            )
            setattr(report, f"{'train_' if split == 'train' else ''}{prefix}_{kind}_eval", value)

    clean_model = None
    if clean_train:
        tick = time.perf_counter()
        clean_model = make(1)
        report.loss = clean_model.loss_name
        report.epoch_losses["clean_train"] = train(
            clean_model,
            x_train,
            y_train,
            nb_epochs=nb_epochs,
            batch_size=batch_size,
            rng=rng,
            adversarial=False,
            progress=progress_bar,
            description="clean training",
        )
        report.timings_s["clean_train"] = time.perf_counter() - tick
        tick = time.perf_counter()
        evaluate(clean_model, "clean_train", x_test, y_test, "test")
        if testing:
            evaluate(clean_model, "clean_train", x_train, y_train, "train")
        report.timings_s["clean_eval"] = time.perf_counter() - tick

    if adv_train:
        tick = time.perf_counter()
        adv_model = make(2)
        report.loss = adv_model.loss_name
        report.epoch_losses["adv_train"] = train(
            adv_model,
            x_train,
            y_train,
            nb_epochs=nb_epochs,
            batch_size=batch_size,
            rng=rng,
            adversarial=True,
            progress=progress_bar,
            description="adversarial training",
        )
        report.timings_s["adv_train"] = time.perf_counter() - tick
        tick = time.perf_counter()
        evaluate(adv_model, "adv_train", x_test, y_test, "test")
        if testing:
            evaluate(adv_model, "adv_train", x_train, y_train, "train")
        report.timings_s["adv_eval"] = time.perf_counter() - tick
    report.timings_s["total"] = time.perf_counter() - started
    return TutorialRun(report, data, train_slice, test_slice, clean_model)


def mnist_tutorial(
    backend: str,
    *,
    train_start: int = 0,
    train_end: int = 60000,
    test_start: int = 0,
    test_end: int = 10000,
    nb_epochs: int = 6,
    batch_size: int = 128,
    learning_rate: float = 0.001,
    clean_train: bool = True,
    testing: bool = False,
    backprop_through_attack: bool = False,
    nb_filters: int = 64,
    label_smoothing: float = 0.1,
    prior: str = DEFAULT_PRIOR,
    data_dir: Any = None,
    seed: int = DEFAULT_SEED,
    adv_train: bool = True,
    download: bool = True,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> TutorialReport:
    """cleverhans v3.1.0's MNIST tutorial (``mnist_tutorial_tf.py``) on ``backend``, on lsr.

    Trains cleverhans' basic CNN with Adam on label-smoothed cross-entropy, attacks it
    with FGSM (eps 0.3, clipped to [0, 1], labelled by the model's own predictions),
    then trains a second CNN adversarially on ``0.5 * clean + 0.5 * adversarial`` loss and
    attacks it the same way. Both losses are ``smooth_ce`` of the backend's lsr adapter
    with integer labels, which equals cleverhans' cross-entropy against smoothed one-hot
    targets: ``prior="uniform"`` (the default) gives v3.1.0's ``CrossEntropy(model,
    smoothing=0.1)`` targets ``y - 0.1 (y - 1/10)`` (0.91 on the true class);
    ``prior="others"`` gives ``Y_train.clip(0.1 / 9, 0.9)``, the targets up to v2.1.0.

    Args:
        backend: ``"jax"`` (flax NNX + optax), ``"torch"`` (torch.nn + torch.optim) or
            ``"tensorflow"`` (Keras on TensorFlow).
        train_start, train_end, test_start, test_end: slices of the training and test
            splits (ends beyond a split are clamped, and the report says so).
        nb_epochs, batch_size, learning_rate: Adam training, as in cleverhans.
        clean_train: train and attack the clean model first.
        testing: also report accuracies on the training slice (the ``train_*`` fields).
        backprop_through_attack: let the adversarial loss differentiate through the
            construction of the FGSM examples (their gradient is zero almost everywhere
            for FGSM's sign, as cleverhans notes; by default it is stopped).
        nb_filters: width of the CNN (64 in cleverhans).
        label_smoothing: epsilon of the smoothed targets.
        prior: ``"uniform"`` (cleverhans v3.1.0, the default) or ``"others"`` (the
            clipped targets of cleverhans up to v2.1.0).
        data_dir: directory of the MNIST files (see ``lsr.tutorial.data``).
        seed: seeds the initial weights and the batch order; the same seed on CPU gives
            the same report (timings aside).
        adv_train: run the adversarial-training half (cleverhans always does; turning it
            off leaves the ``adv_train_*`` fields None, e.g. for calibration studies).
        download: fetch missing MNIST files (checksum-verified) when online.
        progress: tqdm progress bars for training and attacks, drawn only when stderr
            is a terminal (never into a file, pipe or CI log).
        log: receives one line per data decision: the data used, a fallback, a
            clamped slice. By default each line is printed to stderr, once.

    Returns:
        A ``TutorialReport`` with cleverhans' accuracy fields and the prior, data, backend,
        versions and timings used.

    Raises:
        ValueError: an unknown backend (the message lists the valid ones) or option.
    """
    options = dict(locals())
    return run_tutorial(**options).report
