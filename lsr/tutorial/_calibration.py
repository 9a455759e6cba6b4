"""The tutorial's calibration section (Müller, Kornblith & Hinton 2019, "When Does Label
Smoothing Help?").

For one backend: the clean model the tutorial trained with label smoothing, and the same
network trained from the same initial weights on the same batches with hard targets
(smoothing 0). The held-out digits (the tutorial's test slice) are split in two halves:
the temperature of each model is fitted on the first half (``lsr.metrics.fit_temperature``,
Guo et al. 2017) and every number is measured on the second half: ECE (15 equal-width
bins, (lo, hi]) and NLL. Reliability diagrams and penultimate-layer projections (Müller
et al., Figure 1) are saved as PNG files; the table and every figure name the data
(``NOT MNIST`` for the scikit-learn digits fallback). Each ECE comes with a 90%
bootstrap interval (``lsr.metrics.calibration_error_interval``: Kumar et al.'s basic
bootstrap, 1000 resamples of the evaluation half, seed 0), so that differences smaller
than the sampling noise of a few thousand digits are not read as effects.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from lsr import metrics
from lsr.tutorial._driver import (
    TutorialRun,
    _Progress,
    backend_module,
    batched_map,
    initial_params,
    train,
)
from lsr.tutorial.data import data_label

N_BINS = 15
# The ECE's bootstrap interval: coverage, resamples, seed (fixed: the table reproduces).
ECE_CONFIDENCE, ECE_RESAMPLES, ECE_SEED = 0.9, 1000, 0
PROJECTED_CLASSES = (0, 1, 2)
VARIANTS = (
    ("hard", "hard targets"),
    ("hard_temperature", "hard targets + temperature scaling"),
    ("smoothed", "label smoothing"),
    ("smoothed_temperature", "label smoothing + temperature scaling"),
)


def _train_clean(run: TutorialRun, smoothing: float, progress: _Progress) -> Any:
    """A clean model trained exactly like the tutorial's first one, but with ``smoothing``.

    Same initial weights (model index 1) and the same batch order (a fresh generator from
    the seed, as the tutorial's clean training starts from one).
    """
    report = run.report
    settings = report.settings
    module = backend_module(report.backend)
    trainer = module.create(
        initial_params(settings["seed"], 1, settings["nb_filters"]),
        learning_rate=settings["learning_rate"],
        label_smoothing=smoothing,
        prior=report.prior,
        backprop_through_attack=settings["backprop_through_attack"],
        seed=settings["seed"],
    )
    train(
        trainer,
        run.data.x_train[run.train_slice],
        run.data.y_train[run.train_slice],
        nb_epochs=settings["nb_epochs"],
        batch_size=settings["batch_size"],
        rng=np.random.default_rng(settings["seed"]),
        adversarial=False,
        progress=progress,
        description=f"calibration: training with smoothing={smoothing}",
    )
    return trainer


def _scores(logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    ece, low, high = metrics.calibration_error_interval(
        logits,
        labels,
        n_bins=N_BINS,
        confidence=ECE_CONFIDENCE,
        n_resamples=ECE_RESAMPLES,
        seed=ECE_SEED,
        method="basic",
    )
    return {
        "ece": float(ece),
        "ece_interval": [float(low), float(high)],
        "nll": float(metrics.negative_log_likelihood(logits, labels)),
        "accuracy": float(np.mean(np.argmax(logits, axis=-1) == labels)),
        "mean_confidence": float(np.mean(np.max(np.exp(logits - _logsumexp(logits)), axis=-1))),
    }


def _logsumexp(z: np.ndarray) -> np.ndarray:
    top = z.max(axis=-1, keepdims=True)
    return np.log(np.sum(np.exp(z - top), axis=-1, keepdims=True)) + top


def _figure(width: float, height: float, panels: int, title: str) -> tuple[Any, Any]:
    # A bare Figure (no pyplot): no GUI backend, no global state.
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width * panels, height), layout="constrained")
    # The data the figure shows, above its panels: a figure copied out of the run
    # still says "NOT MNIST" when it comes from the digits fallback.
    figure.suptitle(title, fontsize="medium")
    return figure, figure.subplots(1, panels)


def calibration_section(
    run: TutorialRun,
    *,
    out_dir: Path | str = "results",
    progress: bool = False,
    log: Any = None,
) -> dict[str, Any]:
    """ECE and NLL of hard-target, temperature-scaled and label-smoothed models.

    Args:
        run: the tutorial's run on one backend (its data, slices, settings and, when it
            trained one, its clean label-smoothed model).
        out_dir: where the PNG figures are written.
        progress: tqdm progress bars.
        log: receives one line per step.

    Returns:
        A JSON-ready dict: the held-out split used, for each variant its ECE with its
        bootstrap interval (``ece_interval``: [low, high]; the interval's settings at the
        top level), NLL, accuracy and mean confidence (and the fitted temperatures), and
        the figures' paths.
    """
    started = time.perf_counter()
    report = run.report
    backend = report.backend
    bar = _Progress(progress, backend)
    say = log or (lambda message: None)
    smoothing = report.label_smoothing
    if smoothing == 0.0:
        # The same for every backend: printed once per run by the tutorial's log.
        say(
            "calibration: the tutorial ran with label_smoothing=0, so both models of the "
            "calibration section are hard-target models"
        )
    smoothed = run.clean_model
    if smoothed is None:
        smoothed = _train_clean(run, smoothing, bar)
    say(f"{backend}: calibration: training the hard-target model (smoothing=0)")
    models = {"smoothed": smoothed, "hard": _train_clean(run, 0.0, bar)}

    x_held = run.data.x_test[run.test_slice]
    y_held = run.data.y_test[run.test_slice]
    half = len(x_held) // 2
    if half < 1:
        raise ValueError(
            "The calibration section needs at least 2 held-out examples (it fits the "
            f"temperature on one half and measures on the other). Received: {len(x_held)}"
        )
    fit, evaluate = slice(0, half), slice(half, len(x_held))
    batch_size = report.settings["batch_size"]
    logits = {
        name: batched_map(model.logits, x_held, batch_size).astype(np.float64)
        for name, model in models.items()
    }
    results: dict[str, Any] = {}
    temperatures = {}
    for name in ("hard", "smoothed"):
        temperatures[name] = metrics.fit_temperature(logits[name][fit], y_held[fit])
        results[name] = _scores(logits[name][evaluate], y_held[evaluate])
        scaled = np.asarray(metrics.apply_temperature(logits[name][evaluate], temperatures[name]))
        results[f"{name}_temperature"] = {
            "temperature": temperatures[name],
            **_scores(scaled, y_held[evaluate]),
        }

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start, stop = run.test_slice.start, run.test_slice.stop
    title = f"{data_label(run.data.source)}; measured on test split [{start + half}:{stop}]"
    figures = {}
    try:
        figures["reliability"] = str(
            _reliability_figure(backend, logits, temperatures, y_held, evaluate, out_dir, title)
        )
        figures["projection"] = str(
            _projection_figure(
                backend, models, x_held, y_held, evaluate, batch_size, out_dir, title
            )
        )
    except ImportError as error:  # matplotlib is optional: the numbers stand without it
        say(f"{backend}: calibration figures skipped: {error}")
        figures["skipped"] = str(error)
    return {
        "data": run.data.headline,
        "held_out": {
            "temperature_fit": f"test split [{start}:{start + half}] ({half} examples)",
            "evaluation": f"test split [{start + half}:{stop}] ({stop - start - half} examples)",
        },
        "label_smoothing": smoothing,
        "prior": report.prior,
        "n_bins": N_BINS,
        "ece_interval": {
            "confidence": ECE_CONFIDENCE,
            "n_resamples": ECE_RESAMPLES,
            "seed": ECE_SEED,
            "method": "basic bootstrap (Kumar et al. 2019): [2 ECE - q_hi, 2 ECE - q_lo] "
            "with q the quantiles of the resampled ECEs",
        },
        "results": results,
        "figures": figures,
        "time_s": time.perf_counter() - started,
    }


def _reliability_figure(backend, logits, temperatures, labels, evaluate, out_dir, title) -> Path:
    figure, axes = _figure(3.6, 3.8, len(VARIANTS), title)
    for ax, (name, _) in zip(axes, VARIANTS, strict=True):
        base = name.removesuffix("_temperature")
        scores = logits[base][evaluate]
        title = "hard targets" if base == "hard" else "label smoothing"
        if name.endswith("_temperature"):
            scores = np.asarray(metrics.apply_temperature(scores, temperatures[base]))
            title = f"{title}, T={temperatures[base]:.2f}"
        metrics.plot_reliability_diagram(
            scores, labels[evaluate], n_bins=N_BINS, ax=ax, title=f"{backend}: {title}"
        )
    path = out_dir / f"reliability_{backend}.png"
    figure.savefig(path, dpi=110)
    return path


def _projection_figure(backend, models, x, labels, evaluate, batch_size, out_dir, title) -> Path:
    keep = np.isin(labels[evaluate], PROJECTED_CLASSES)
    x_kept = x[evaluate][keep]
    y_kept = labels[evaluate][keep]
    figure, axes = _figure(4.2, 4.0, 2, title)
    panels = (("hard", "hard targets"), ("smoothed", "label smoothing"))
    for ax, (name, title) in zip(axes, panels, strict=True):
        features = batched_map(models[name].features, x_kept, batch_size).astype(np.float64)
        metrics.plot_penultimate_projection(
            features,
            y_kept,
            models[name].dense_kernel().astype(np.float64),
            PROJECTED_CLASSES,
            ax=ax,
            title=f"{backend}: {title}",
        )
    path = out_dir / f"projection_{backend}.png"
    figure.savefig(path, dpi=110)
    return path


def calibration_table(sections: dict[str, dict[str, Any]]) -> str:
    """Markdown: ECE (with its bootstrap interval) / NLL / accuracy per backend and variant
    (evaluation half), below the line that says which data the sections come from."""
    headlines = dict.fromkeys(section.get("data", "data: unknown") for section in sections.values())
    percent = round(100 * ECE_CONFIDENCE)
    rows = [
        f"| backend | model | T | ECE [{percent}% interval] | NLL | accuracy | mean confidence |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for backend, section in sections.items():
        for name, title in VARIANTS:
            result = section["results"][name]
            temperature = result.get("temperature")
            rows.append(
                f"| {backend} | {title} | "
                f"{'-' if temperature is None else f'{temperature:.3f}'} | "
                f"{result['ece']:.4f} {_interval_text(result)} | {result['nll']:.4f} | "
                f"{result['accuracy']:.4f} | "
                f"{result['mean_confidence']:.4f} |"
            )
    return "\n".join(headlines) + "\n\n" + "\n".join(rows)


def _interval_text(result: dict[str, Any]) -> str:
    """``[low, high]`` of a result's ECE interval (empty for a report made without one)."""
    interval = result.get("ece_interval")
    if interval is None:
        return ""
    low, high = interval
    return f"[{low:.4f}, {high:.4f}]"
