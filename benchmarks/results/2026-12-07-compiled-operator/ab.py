"""``torch.compile`` before and after the operators ``lsr::smooth_ce`` and
``lsr::smooth_bce``: lsr's loss compiled (Inductor, the default backend) over the
rival compiled the same way, forward + backward (``torch.autograd.grad``) and the loss
alone (``torch.no_grad``), on the CPU; and the guards each compiled function tests on
every call (``torch._dynamo.explain``), lsr's and the rival's.

The rivals are the full benchmark's: ``F.cross_entropy(label_smoothing=0.1)`` for
``smooth_ce(smoothing=0.1)``, and ``F.binary_cross_entropy_with_logits`` on targets
smoothed by hand (``0.9 y + 0.05``) for ``smooth_bce(smoothing=0.1, prior=0.5)`` on
multi-label (``ml``) 0/1 float targets, 5% of them 1.

Each checkout is timed in a process of its own (the two cannot be imported into one),
the processes alternating, two of each; within a process lsr and the rival take turns in
``round_order``, and each ratio is of medians in that process.

Run from a checkout's root, naming the two checkouts to compare (the first the older):
``PYTHONPATH=. python benchmarks/results/2026-12-07-compiled-operator/ab.py BEFORE AFTER``
(for example a ``git worktree`` of 8f163cf, and this checkout).
"""

import os
import statistics
import subprocess
import sys
import time

# (loss, rows, labels or classes, dtype)
CELLS = [
    ("softmax", 256, 10, "float32"),
    ("softmax", 256, 10, "bfloat16"),
    ("softmax", 4096, 1000, "float32"),
    ("binary", 4096, 80, "float32"),
    ("binary", 65536, 80, "float32"),
]


def cell(loss, n, k, dtype):
    """``(lsr's guards, the rival's, lsr / rival loss alone, lsr / rival f+b)``."""
    import torch
    import torch.nn.functional as F

    import lsr.torch
    from benchmarks.common import round_order

    dtype = getattr(torch, dtype)
    logits = torch.randn(n, k).to(dtype)
    leaf = logits.clone().requires_grad_(True)
    if loss == "softmax":
        labels = torch.randint(0, k, (n,))

        def ours(x, y):
            return lsr.torch.smooth_ce(x, y, smoothing=0.1)

        def rival(x, y):
            return F.cross_entropy(x, y, label_smoothing=0.1)

    else:
        labels = (torch.rand(n, k) < 0.05).to(dtype)

        def ours(x, y):
            return lsr.torch.smooth_bce(x, y, smoothing=0.1, prior=0.5)

        def rival(x, y):
            return F.binary_cross_entropy_with_logits(x, 0.9 * y + 0.05)

    guards = []
    for fn in (ours, rival):
        torch._dynamo.reset()
        guards.append(len(torch._dynamo.explain(fn)(leaf, labels).out_guards))
    torch._dynamo.reset()
    compiled = {"ours": torch.compile(ours), "rival": torch.compile(rival)}
    steps = {}
    for name, fn in compiled.items():

        def alone(fn=fn):
            with torch.no_grad():
                return fn(logits, labels)

        steps[name] = alone
        steps[f"{name} f+b"] = lambda fn=fn: torch.autograd.grad(fn(leaf, labels), leaf)
    for step in steps.values():
        step()
        step()
    calls = max(5, min(50, 2_000_000 // (n * k)))
    times = {name: [] for name in steps}
    for number in range(16):
        for name in round_order(list(steps), number):
            step = steps[name]
            step()
            start = time.perf_counter()
            for _ in range(calls):
                step()
            times[name].append((time.perf_counter() - start) / calls)
    median = {name: statistics.median(values) for name, values in times.items()}
    return (
        *guards,
        median["ours"] / median["rival"],
        median["ours f+b"] / median["rival f+b"],
    )


def child():
    import torch

    torch.manual_seed(0)
    cells = []
    for loss, n, k, dtype in CELLS:
        ours, theirs, alone, both = cell(loss, n, k, dtype)
        cells.append(f"{loss} {n}x{k} {dtype}: guards {ours}/{theirs}, {alone:.2f}/{both:.2f}")
    print("\n  ".join(cells))


def main():
    if sys.argv[1:] == ["--child"]:
        child()
        return
    import torch

    before, after = (os.path.abspath(path) for path in sys.argv[1:3])
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next(
        (line.split(":", 1)[1].strip() for line in cpu.splitlines() if "Model name" in line), "?"
    )
    print(
        f"torch {torch.__version__}, {model}, {torch.backends.cpu.get_cpu_capability()}, "
        f"{os.cpu_count()} CPUs"
    )
    print("per cell: guards lsr/rival, then lsr / rival for the loss alone / forward + backward")
    for round_number in range(2):
        for label, checkout in (("before", before), ("after", after)):
            revision = subprocess.run(
                ["git", "-C", checkout, "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
            ).stdout.strip()
            env = {**os.environ, "PYTHONPATH": checkout}
            line = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--child"],
                cwd=checkout,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            print(f"{label} ({revision}), round {round_number + 1}:\n  {line}", flush=True)


if __name__ == "__main__":
    main()
