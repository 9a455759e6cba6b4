"""Small eager PyTorch calls before and after the route's kept targets (``FixedTargets``)
and the key from a tuple: lsr's ``smooth_ce(smoothing=0.1)`` over
``F.cross_entropy(label_smoothing=0.1)``, the loss alone (under ``torch.no_grad``) and
forward + backward (``torch.autograd.grad``), on the CPU.

Each checkout is timed in a process of its own (the two cannot be imported into one),
the processes alternating, two of each; within a process lsr and the rival take turns in
``round_order``, in batches of 50 calls, and each ratio is of medians in that process.

Run from a checkout's root, naming the two checkouts to compare (the first the older):
``PYTHONPATH=. python benchmarks/results/2026-12-07-kept-targets/ab.py BEFORE AFTER``
(for example a ``git worktree`` of 0adfc57, and this checkout).
"""

import os
import statistics
import subprocess
import sys
import time

SHAPES = [
    (32, 10, "float32"),
    (256, 10, "float32"),
    (256, 10, "bfloat16"),
    (64, 100, "float32"),
    (1024, 10, "float32"),
    (128, 1000, "float32"),
]


def ratios(n, k, dtype):
    """lsr / rival at one shape: ``(the loss alone, forward + backward)``."""
    import torch
    import torch.nn.functional as F

    import lsr.torch
    from benchmarks.common import round_order

    logits = torch.randn(n, k).to(getattr(torch, dtype))
    ids = torch.randint(0, k, (n,))
    leaf = logits.clone().requires_grad_(True)

    def ours(x):
        return lsr.torch.smooth_ce(x, ids, smoothing=0.1)

    def rival(x):
        return F.cross_entropy(x, ids, label_smoothing=0.1)

    def loss(fn):
        def step():
            with torch.no_grad():
                return fn(logits)

        return step

    def forward_backward(fn):
        return lambda: torch.autograd.grad(fn(leaf), leaf)

    steps = {
        "ours": loss(ours),
        "rival": loss(rival),
        "ours f+b": forward_backward(ours),
        "rival f+b": forward_backward(rival),
    }
    times = {name: [] for name in steps}
    for number in range(16):
        for name in round_order(list(steps), number):
            step = steps[name]
            step()
            start = time.perf_counter()
            for _ in range(50):
                step()
            times[name].append((time.perf_counter() - start) / 50)
    median = {name: statistics.median(values) for name, values in times.items()}
    return median["ours"] / median["rival"], median["ours f+b"] / median["rival f+b"]


def child():
    import torch

    torch.manual_seed(0)
    cells = []
    for n, k, dtype in SHAPES:
        alone, both = ratios(n, k, dtype)
        cells.append(f"{n}x{k} {dtype} {alone:.2f}/{both:.2f}")
    print("  ".join(cells))


def main():
    if sys.argv[1:] == ["--child"]:
        child()
        return
    before, after = (os.path.abspath(path) for path in sys.argv[1:3])
    print("lsr / rival, the loss alone / forward + backward, per shape and dtype")
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
            print(f"{label} ({revision}), round {round_number + 1}: {line}")


if __name__ == "__main__":
    main()
