"""The tutorial's distillation experiment (Müller, Kornblith & Hinton 2019, "When Does
Label Smoothing Help?", section 4; distillation as in Hinton, Vinyals & Dean 2015).

For each of a few seeds, on one backend: two teachers with the tutorial's network, one
trained on hard targets and one with the tutorial's label smoothing, from the same initial
weights on the same batches (only the targets differ); then a narrower student distilled
from each, on the soft targets only (``distill_loss`` of the backend's lsr adapter at
temperature T, Hinton et al.'s ``T**2`` scaling), again from one set of initial weights on
one batch order. Reported for each teacher: its test error, its student's test error, and
the mutual-information proxy Müller et al. use to explain why label-smoothed teachers
distil worse (``logit_difference_mutual_information``), each as the values of every seed,
their mean and standard deviation, and the paired differences (smoothed minus hard).

The teachers are as small as the tutorial (by default 2 epochs on 5,000 images; in CI the
images are the t10k-only split); the table says so, and reports whatever direction the
seeds give with their spread.
"""

from __future__ import annotations

import itertools
import math
import time
from typing import Any

import numpy as np

from lsr._validation import check_positive_int, fail_type, fail_value
from lsr.tutorial._driver import (
    NUM_CLASSES,
    TutorialRun,
    _Progress,
    backend_module,
    batched_map,
    initial_params,
    train,
)

DEFAULT_SEEDS = 3
DEFAULT_TEMPERATURE = 4.0
# The noisy copies of the mutual-information proxy: random translations of the training
# digits by up to MAX_SHIFT pixels in each direction (zeros shifted in), COPIES per
# example, for EXAMPLES_PER_CLASS training examples of every class.
EXAMPLES_PER_CLASS = 50
COPIES = 8
MAX_SHIFT = 2
TEACHER_INDEX = 1  # initial_params' model index: the tutorial's clean model
STUDENT_INDEX = 3
TEACHERS = (("hard", "hard-target"), ("smoothed", "label-smoothed"))
MEASURES = ("teacher_error", "student_error", "mutual_information")


def logit_difference_mutual_information(samples: Any) -> float:
    """Müller et al.'s estimate of the information a teacher's logits keep about examples.

    ``I(X; Y)`` between ``X``, the index of an example (uniform over ``N`` examples), and
    ``Y``, the difference of two of the teacher's logits on a noisy copy of that example
    (Müller, Kornblith & Hinton 2019, section 4: ``X`` the training example, ``Y`` the
    logit difference of a pair of classes under data augmentation). ``p(y | x)`` is
    taken to be Gaussian with the example's mean ``mu_x`` over its copies and one
    variance ``s**2`` pooled over all examples (``M - 1`` degrees of freedom each); the
    expectation is the average over the copies themselves::

        I = log N + mean over x, m of [log p(y_xm | x) - log sum_x' p(y_xm | x')]

    It is at most ``log N`` (every copy points to its own example: the logits tell the
    examples apart) and about 0 when the examples' differences are lost in the noise
    (sampling error can take it slightly below 0). Label smoothing pulls each class's
    logits into a tight cluster, which lowers it.

    Args:
        samples: (N, M) real array: ``Y`` for ``M >= 2`` noisy copies of each of
            ``N >= 2`` examples.

    Returns:
        The estimate in nats, a Python float.

    Raises:
        TypeError: ``samples`` is not a real array.
        ValueError: not 2-D with ``N, M >= 2``, not finite, or with no variation within
            any example (the Gaussian has no width: the proxy needs noise).

    Example:
        >>> import numpy as np
        >>> from lsr.tutorial._distillation import logit_difference_mutual_information
        >>> rng = np.random.default_rng(0)
        >>> apart = np.array([[0.0], [100.0]]) + rng.standard_normal((2, 50))
        >>> round(logit_difference_mutual_information(apart), 4)  # log 2
        0.6931
    """
    y = np.asarray(samples)
    if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.number) or np.iscomplexobj(y):
        fail_type("`samples` must be a real array.", "samples.dtype", str(y.dtype))
    if y.ndim != 2 or y.shape[0] < 2 or y.shape[1] < 2:
        fail_value(
            "`samples` must have shape (N, M): M >= 2 noisy copies of each of N >= 2 examples.",
            "samples.shape",
            y.shape,
        )
    y = y.astype(np.float64)
    if not np.isfinite(y).all():
        fail_value("`samples` must be finite.", "samples", y)
    n, m = y.shape
    means = y.mean(axis=1)
    variance = float(np.sum((y - means[:, None]) ** 2) / (n * (m - 1)))
    if not variance > 0:
        fail_value(
            "`samples` must vary within some example: the proxy's Gaussian p(y | x) needs "
            "the noise's variance.",
            "samples",
            y,
        )
    total = 0.0
    block = max(1, 2**21 // (n * m))  # bounds the (rows, M, N) array to ~16 MB
    for start in range(0, n, block):
        rows = y[start : start + block]
        own = -((rows - means[start : start + block, None]) ** 2) / (2 * variance)
        every = -((rows[:, :, None] - means[None, None, :]) ** 2) / (2 * variance)
        top = every.max(axis=-1)
        log_sum = np.log(np.sum(np.exp(every - top[..., None]), axis=-1)) + top
        total += float(np.sum(own - log_sum))
    return math.log(n) + total / (n * m)


def shifted_copies(
    x: np.ndarray, copies: int, max_shift: int, rng: np.random.Generator
) -> np.ndarray:
    """(N * copies, 28, 28, 1): each image translated ``copies`` times by random offsets
    in ``[-max_shift, max_shift]`` along both axes (zeros shifted in), example by example."""
    height, width = x.shape[1:3]
    padded = np.pad(x, ((0, 0), (max_shift, max_shift), (max_shift, max_shift), (0, 0)))
    offsets = rng.integers(0, 2 * max_shift + 1, size=(len(x), copies, 2))
    out = np.empty((len(x), copies, *x.shape[1:]), dtype=x.dtype)
    for i, j in itertools.product(range(len(x)), range(copies)):
        top, left = offsets[i, j]
        out[i, j] = padded[i, top : top + height, left : left + width]
    return out.reshape(len(x) * copies, *x.shape[1:])


def check_distillation_options(seeds: Any, temperature: Any, student_filters: Any) -> None:
    """The experiment's options, checked before anything is trained."""
    check_positive_int("distill_seeds", seeds)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        fail_type("`distill_temperature` must be a number.", "distill_temperature", temperature)
    if not 0 < temperature < math.inf:
        fail_value(
            "`distill_temperature` must be finite and > 0.", "distill_temperature", temperature
        )
    if student_filters is not None:
        check_positive_int("distill_student_filters", student_filters)


class _Distilling:
    """A student seen by the driver's training loop: its batch "labels" are the teacher's
    logits of those images, and each step is the backend's distillation step."""

    def __init__(self, student: Any, temperature: float) -> None:
        self.student = student
        self.temperature = temperature

    def train_step(self, x: np.ndarray, teacher_logits: np.ndarray, adversarial: bool) -> Any:
        del adversarial  # always False here
        return self.student.distill_step(x, teacher_logits, self.temperature)


def _summary(values: list[float]) -> dict[str, Any]:
    array = np.asarray(values, dtype=np.float64)
    return {
        "values": [float(v) for v in array],
        "mean": float(array.mean()),
        "std": float(array.std(ddof=1)) if len(array) > 1 else None,
    }


def _class_pairs(labels: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    """Every pair (a, b) of classes present, with the rows of their examples."""
    return [
        (int(a), int(b), np.isin(labels, (a, b)))
        for a, b in itertools.combinations(np.unique(labels), 2)
    ]


def _mutual_information(
    teacher: Any, x_copies: np.ndarray, labels: np.ndarray, batch_size: int
) -> float:
    """The proxy averaged over every pair of classes present: for the pair (a, b), the
    examples of classes a and b, and Y = logit_a - logit_b on their copies."""
    logits = batched_map(teacher.logits, x_copies, batch_size).astype(np.float64)
    logits = logits.reshape(len(labels), -1, NUM_CLASSES)
    values = [
        logit_difference_mutual_information(logits[rows, :, a] - logits[rows, :, b])
        for a, b, rows in _class_pairs(labels)
    ]
    return float(np.mean(values))


def distillation_section(
    run: TutorialRun,
    *,
    seeds: int = DEFAULT_SEEDS,
    temperature: float = DEFAULT_TEMPERATURE,
    student_filters: int | None = None,
    progress: bool = False,
    log: Any = None,
) -> dict[str, Any]:
    """Teachers with and without label smoothing, a student distilled from each.

    Args:
        run: the tutorial's run on one backend (its data, slices and settings; its clean
            model is reused as the first seed's label-smoothed teacher, which it is).
        seeds: how many seeds, ``seed, seed + 1, ...`` (the tutorial's seed first). Each
            seed draws the initial weights and the batch orders.
        temperature: Hinton et al.'s distillation temperature T.
        student_filters: the student's ``nb_filters`` (default: a quarter of the
            tutorial's, at least 1).
        progress: tqdm progress bars.
        log: receives one line per step.

    Returns:
        A JSON-ready dict: the settings, every seed's numbers, and their summaries.
    """
    check_distillation_options(seeds, temperature, student_filters)
    started = time.perf_counter()
    report = run.report
    settings = report.settings
    backend = report.backend
    module = backend_module(backend)
    bar = _Progress(progress, backend)
    say = log or (lambda message: None)
    smoothing = report.label_smoothing
    nb_filters = settings["nb_filters"]
    student_filters = max(1, nb_filters // 4) if student_filters is None else student_filters
    nb_epochs, batch_size = settings["nb_epochs"], settings["batch_size"]
    if smoothing == 0.0:
        say(
            "distillation: the tutorial ran with label_smoothing=0, so both teachers of the "
            "distillation section are hard-target teachers"
        )
    x_train = run.data.x_train[run.train_slice]
    y_train = run.data.y_train[run.train_slice]
    x_test = run.data.x_test[run.test_slice]
    y_test = run.data.y_test[run.test_slice]
    # The proxy's examples: the first EXAMPLES_PER_CLASS training examples of each class.
    chosen = np.concatenate(
        [np.flatnonzero(y_train == c)[:EXAMPLES_PER_CLASS] for c in range(NUM_CLASSES)]
    )
    mi_labels = y_train[chosen]

    def create(seed: int, index: int, filters: int, label_smoothing: float) -> Any:
        return module.create(
            initial_params(seed, index, filters),
            learning_rate=settings["learning_rate"],
            label_smoothing=label_smoothing,
            prior=report.prior,
            backprop_through_attack=False,
            seed=seed,
        )

    def error(model: Any) -> float:
        logits = batched_map(model.logits, x_test, batch_size)
        return float(np.mean(np.argmax(logits, axis=-1) != y_test))

    runs = []
    for seed in range(settings["seed"], settings["seed"] + seeds):
        x_copies = shifted_copies(
            x_train[chosen], COPIES, MAX_SHIFT, np.random.default_rng([seed, STUDENT_INDEX + 1])
        )
        results: dict[str, Any] = {"seed": seed}
        for name, title in TEACHERS:
            label_smoothing = 0.0 if name == "hard" else smoothing
            if name == "smoothed" and seed == settings["seed"] and run.clean_model is not None:
                # The tutorial's clean model: the same initial weights (index 1), the
                # same batches (a fresh generator from the seed) and the same smoothing.
                teacher = run.clean_model
            else:
                say(f"{backend}: distillation: seed {seed}: training the {title} teacher")
                teacher = create(seed, TEACHER_INDEX, nb_filters, label_smoothing)
                train(
                    teacher,
                    x_train,
                    y_train,
                    nb_epochs=nb_epochs,
                    batch_size=batch_size,
                    rng=np.random.default_rng(seed),
                    adversarial=False,
                    progress=bar,
                    description=f"distillation: {title} teacher, seed {seed}",
                )
            soft_targets = batched_map(teacher.logits, x_train, batch_size).astype(np.float32)
            say(f"{backend}: distillation: seed {seed}: distilling from the {title} teacher")
            student = create(seed, STUDENT_INDEX, student_filters, 0.0)
            train(
                _Distilling(student, float(temperature)),
                x_train,
                soft_targets,
                nb_epochs=nb_epochs,
                batch_size=batch_size,
                rng=np.random.default_rng([seed, STUDENT_INDEX]),
                adversarial=False,
                progress=bar,
                description=f"distillation: student of the {title} teacher, seed {seed}",
            )
            results[name] = {
                "teacher_error": error(teacher),
                "student_error": error(student),
                "mutual_information": _mutual_information(teacher, x_copies, mi_labels, batch_size),
            }
        runs.append(results)

    summary: dict[str, Any] = {
        name: {measure: _summary([r[name][measure] for r in runs]) for measure in MEASURES}
        for name, _ in TEACHERS
    }
    summary["smoothed_minus_hard"] = {
        measure: _summary([r["smoothed"][measure] - r["hard"][measure] for r in runs])
        for measure in MEASURES
    }
    pairs = _class_pairs(mi_labels)
    start, stop = run.test_slice.start, run.test_slice.stop
    return {
        "data": run.data.headline,
        "scale": _scale(len(x_train), nb_epochs, seeds, run.data.source),
        "label_smoothing": smoothing,
        "prior": report.prior,
        "temperature": float(temperature),
        "loss": f"lsr.{backend}.distill_loss (soft targets only, T**2 scaled)",
        "teacher_filters": nb_filters,
        "student_filters": student_filters,
        "seeds": [r["seed"] for r in runs],
        "errors_on": f"test split [{start}:{stop}] ({stop - start} examples)",
        "mutual_information": {
            "estimator": "logit_difference_mutual_information (nats), mean over class pairs",
            "class_pairs": len(pairs),
            "examples_per_class": EXAMPLES_PER_CLASS,
            "copies": COPIES,
            "noise": f"random translations by up to {MAX_SHIFT} pixels, zeros shifted in",
            # log N of each pair's N examples, averaged as the estimates are.
            "upper_bound_nats": float(np.mean([math.log(rows.sum()) for *_, rows in pairs])),
        },
        "runs": runs,
        "summary": summary,
        "time_s": time.perf_counter() - started,
    }


def _scale(images: int, epochs: int, seeds: int, source: str) -> str:
    """How small the experiment is, in words, e.g. for the caption under its table."""
    plural = lambda count, noun: f"{count} {noun}{'s' if count != 1 else ''}"  # noqa: E731
    split = " (t10k-only split)" if source == "mnist-t10k-split" else ""
    return (
        f"{plural(images, 'training image')}, {plural(epochs, 'epoch')}, "
        f"{plural(seeds, 'seed')}{split}: a small experiment"
    )


def _spread(entry: dict[str, Any], digits: int, signed: bool = False) -> str:
    sign = "+" if signed else ""
    text = f"{entry['mean']:{sign}.{digits}f}"
    return text if entry["std"] is None else f"{text} ± {entry['std']:.{digits}f}"


def distillation_table(sections: dict[str, dict[str, Any]]) -> str:
    """Markdown: teacher error, student error and the proxy per backend and teacher (mean
    ± standard deviation over the seeds, and the paired differences), below the line that
    names the data and a line that says how small the experiment is."""
    first = next(iter(sections.values()))
    information = first["mutual_information"]
    caption = (
        f"distillation (Müller et al. 2019, section 4): {first['scale']}. Teachers "
        f"nb_filters={first['teacher_filters']}, students nb_filters="
        f"{first['student_filters']} distilled at T={first['temperature']:g}; mean ± std "
        f"over seeds {', '.join(map(str, first['seeds']))}; errors on {first['errors_on']}; "
        f"MI proxy in nats over {information['class_pairs']} class pairs (at most "
        f"{information['upper_bound_nats']:.2f}). Differences within their std are not "
        "findings."
    )
    rows = [
        "| backend | teacher | teacher error | student error | MI proxy |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for backend, section in sections.items():
        summary = section["summary"]
        labels = {
            "hard": "hard targets",
            "smoothed": f"label smoothing {section['label_smoothing']:g}",
            "smoothed_minus_hard": "smoothing - hard (paired)",
        }
        for name, label in labels.items():
            signed = name == "smoothed_minus_hard"
            cells = [
                _spread(summary[name]["teacher_error"], 4, signed),
                _spread(summary[name]["student_error"], 4, signed),
                _spread(summary[name]["mutual_information"], 3, signed),
            ]
            rows.append(f"| {backend} | {label} | " + " | ".join(cells) + " |")
    headlines = "\n".join(dict.fromkeys(section["data"] for section in sections.values()))
    return f"{headlines}\n\n" + "\n".join(rows) + f"\n\n{caption}"
