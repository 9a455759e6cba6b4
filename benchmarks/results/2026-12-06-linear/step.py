"""Whole steps of ``lsr.torch.linear_smooth_ce`` (forward + backward, smoothing 0.1,
"mean"), the code of 2026-12-06 against its own earlier choices, with
``F.linear_cross_entropy`` (no smoothing: its chunked path) in the same process.

* ``new``: the defaults (512-row blocks at K = 32000, column-major on the CPU);
* ``old``: 524-row blocks (``chunk_size``), row-major (the namespace's ``matmul_out``
  replaced by a row-major one), as before;
* ``rival``: ``F.linear_cross_entropy(hidden, projection, target)``.

Seconds per step, the methods taking turns, ``repeats`` rounds. Run from a checkout's
root: ``PYTHONPATH=. python benchmarks/results/2026-12-06-linear/step.py N d K repeats``
"""

import sys
import time

import torch
import torch.nn.functional as F

import lsr.torch
from lsr.torch import _namespace


def main():
    rows, width, classes, repeats = (int(a) for a in sys.argv[1:5])
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads; N={rows} d={width} K={classes}")
    hidden = torch.randn(rows, width, requires_grad=True)
    projection = (torch.randn(classes, width) * 0.02).requires_grad_()
    target = torch.randint(0, classes, (rows,))
    matmul_out = _namespace.xp.matmul_out

    def row_major(shape, *, dtype, device):
        return torch.zeros(shape, dtype=dtype, device=device)

    def new():
        lsr.torch.linear_smooth_ce(hidden, projection, target, smoothing=0.1).backward()

    def old():
        _namespace.xp.matmul_out = row_major
        try:
            lsr.torch.linear_smooth_ce(
                hidden, projection, target, smoothing=0.1, chunk_size=(1 << 24) // classes
            ).backward()
        finally:
            _namespace.xp.matmul_out = matmul_out

    def rival():
        F.linear_cross_entropy(hidden, projection, target).backward()

    methods = {"new": new, "old": old, "rival": rival}
    times = {name: [] for name in methods}
    for call in methods.values():
        call()
        hidden.grad = projection.grad = None
    for _ in range(repeats):
        for name, call in methods.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
            hidden.grad = projection.grad = None
    rival_median = sorted(times["rival"])[repeats // 2]
    for name, values in times.items():
        median = sorted(values)[repeats // 2]
        listed = " ".join(f"{v:.2f}" for v in sorted(values))
        print(f"{name:6s} {listed}  median {median:.2f} s, {median / rival_median:.3f} of rival")


if __name__ == "__main__":
    main()
