"""``python -m lsr.tutorial``: cleverhans v3.1.0's MNIST tutorial on JAX, PyTorch and
TensorFlow.

Example (the configuration of cleverhans' own test: 5,000 training images, 2 epochs,
every backend)::

    python -m lsr.tutorial --backend all --train_end 5000 --nb_epochs 2 --testing

Prints a comparison table across backends, the calibration section's table and the
distillation section's table (teachers with and without label smoothing, a student
distilled from each, over ``--distill_seeds`` seeds), and writes them to a JSON report
(``--report``), with the calibration figures as PNG files under ``--out_dir``. Every table and
figure says which data it comes from (``NOT MNIST`` for the scikit-learn digits
fallback). Log lines go to stderr, each once per run; progress bars only to a terminal.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from lsr.tutorial._distillation import (
    DEFAULT_SEEDS,
    DEFAULT_TEMPERATURE,
    check_distillation_options,
    distillation_section,
    distillation_table,
)
from lsr.tutorial._driver import (
    ACCURACY_FIELDS,
    BACKENDS,
    DEFAULT_PRIOR,
    DEFAULT_SEED,
    PRIORS,
    RunLog,
    run_tutorial,
)
from lsr.tutorial.data import data_headline, load_mnist


def _flag(parser: argparse.ArgumentParser, name: str, default: bool, help: str) -> None:
    parser.add_argument(
        f"--{name}", default=default, action=argparse.BooleanOptionalAction, help=help
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lsr.tutorial",
        description="cleverhans' MNIST tutorial (FGSM and adversarial training with label "
        "smoothing) on lsr, in JAX, PyTorch and TensorFlow.",
    )
    parser.add_argument("--backend", default="all", choices=(*BACKENDS, "all"))
    # cleverhans' flags and mnist_tutorial arguments, with its defaults.
    parser.add_argument("--train_start", type=int, default=0)
    parser.add_argument("--train_end", type=int, default=60000)
    parser.add_argument("--test_start", type=int, default=0)
    parser.add_argument("--test_end", type=int, default=10000)
    parser.add_argument("--nb_epochs", type=int, default=6, help="Number of epochs")
    parser.add_argument("--batch_size", type=int, default=128, help="Size of training batches")
    parser.add_argument("--learning_rate", type=float, default=0.001)
    parser.add_argument("--nb_filters", type=int, default=64, help="Model size multiplier")
    _flag(parser, "clean_train", True, "Train (and attack) a model on clean examples first")
    _flag(
        parser,
        "backprop_through_attack",
        False,
        "Backpropagate through the construction of the adversarial examples",
    )
    _flag(
        parser,
        "adv_train",
        True,
        "Train (and attack) the adversarially trained model (off: the clean half only)",
    )
    _flag(parser, "testing", False, "Also report accuracies on the training slice")
    parser.add_argument("--label_smoothing", type=float, default=0.1)
    parser.add_argument(
        "--prior",
        default=DEFAULT_PRIOR,
        choices=PRIORS,
        help='"uniform": cleverhans v3.1.0\'s y - eps (y - 1/10) (the default); "others": '
        "the clip(y, eps/9, 1-eps) of cleverhans up to v2.1.0",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--data_dir", default=None, help="Directory of the MNIST .gz files")
    _flag(parser, "download", True, "Download missing MNIST files (SHA-256 verified)")
    _flag(
        parser,
        "calibration",
        True,
        "Calibration section: ECE/NLL of hard-target, temperature-scaled and "
        "label-smoothed models, with reliability diagrams and penultimate projections",
    )
    _flag(
        parser,
        "distillation",
        True,
        "Distillation section: teachers with and without label smoothing, a student "
        "distilled from each, over several seeds (Müller et al. 2019, section 4)",
    )
    parser.add_argument(
        "--distill_seeds", type=int, default=DEFAULT_SEEDS, help="Seeds of the distillation"
    )
    parser.add_argument(
        "--distill_temperature",
        type=float,
        default=DEFAULT_TEMPERATURE,
        help="Hinton et al.'s distillation temperature T",
    )
    parser.add_argument(
        "--distill_student_filters",
        type=int,
        default=None,
        help="The students' nb_filters (default: a quarter of --nb_filters)",
    )
    parser.add_argument("--out_dir", default="results", help="Where figures go")
    parser.add_argument(
        "--report", default=None, help="JSON report path (default: OUT_DIR/tutorial_report.json)"
    )
    _flag(parser, "progress", True, "tqdm progress bars (drawn only on a terminal)")
    return parser


def data_lines(headlines: list[str]) -> str:
    """The data line(s) printed above a table: each distinct ``data_headline`` once."""
    return "\n".join(dict.fromkeys(headlines))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def comparison_table(reports: dict[str, dict[str, Any]]) -> str:
    """A markdown table: one row per cleverhans field, one column per backend, below the
    line that says which data the reports come from."""
    backends = list(reports)
    data = data_lines([data_headline(r["data_source"], r["data"]) for r in reports.values()])
    rows = [
        ["field", *backends],
        ["---", *["---:"] * len(backends)],
    ]
    for name in ACCURACY_FIELDS:
        values = [reports[b][name] for b in backends]
        if all(value is None for value in values):
            continue
        rows.append([name, *map(_cell, values)])
    for name in ("clean_train", "adv_train", "total"):
        values = [reports[b]["timings_s"].get(name) for b in backends]
        rows.append([f"time {name} (s)", *(_cell(v) if v is None else f"{v:.1f}" for v in values)])
    table = "\n".join("| " + " | ".join(row) + " |" for row in rows)
    return f"{data}\n\n{table}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    distill = {
        "seeds": args.distill_seeds,
        "temperature": args.distill_temperature,
        "student_filters": args.distill_student_filters,
    }
    if args.distillation:
        check_distillation_options(**distill)  # before hours of training, not after
    backends = list(BACKENDS) if args.backend == "all" else [args.backend]
    out_dir = Path(args.out_dir)
    report_path = Path(args.report) if args.report else out_dir / "tutorial_report.json"
    started = time.perf_counter()
    log = RunLog()  # each note once per run, not once per backend
    data = load_mnist(args.data_dir, download_missing=args.download, log=log)
    log(data.headline)

    options = {
        name: getattr(args, name)
        for name in (
            "train_start",
            "train_end",
            "test_start",
            "test_end",
            "nb_epochs",
            "batch_size",
            "learning_rate",
            "clean_train",
            "adv_train",
            "testing",
            "backprop_through_attack",
            "nb_filters",
            "label_smoothing",
            "prior",
            "seed",
        )
    }
    reports: dict[str, dict[str, Any]] = {}
    calibration: dict[str, Any] = {}
    distillation: dict[str, Any] = {}
    for backend in backends:
        log(f"{backend}: running the tutorial")
        run = run_tutorial(backend, data=data, progress=args.progress, log=log, **options)
        reports[backend] = run.report.to_dict()
        log(f"{backend}: done in {run.report.timings_s['total']:.1f} s")
        if args.calibration:
            from lsr.tutorial._calibration import calibration_section

            calibration[backend] = calibration_section(
                run, out_dir=out_dir, progress=args.progress, log=log
            )
        if args.distillation:
            distillation[backend] = distillation_section(
                run, progress=args.progress, log=log, **distill
            )
            log(f"{backend}: distillation done in {distillation[backend]['time_s']:.1f} s")

    table = comparison_table(reports)
    print(table)
    if calibration:
        from lsr.tutorial._calibration import calibration_table

        print()
        print(calibration_table(calibration))
    if distillation:
        print()
        print(distillation_table(distillation))
    report_path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "command": "python -m lsr.tutorial " + " ".join(argv if argv is not None else sys.argv[1:]),
        "wall_time_s": time.perf_counter() - started,
        "data": data.headline,
        "reports": reports,
        "calibration": calibration,
        "distillation": distillation,
        "table": table,
    }
    report_path.write_text(json.dumps(payload, indent=2) + "\n")
    log(f"report written to {report_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
