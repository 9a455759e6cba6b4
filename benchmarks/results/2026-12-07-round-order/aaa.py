"""An A/A/A check of the main timer's order: three identical arms of
``lsr.torch.smooth_ce(smoothing=0.1)`` and ``F.cross_entropy(label_smoothing=0.1)``
(forward + backward, eager, CPU), in the order lsr A, rival, lsr B, lsr C, timed in one
process by ``time_methods`` as it was before this record (``before``: the same order
every round, no untimed call before a batch) and as it is since (``after``: one untimed
call before each batch, the order of ``round_order``). Prints the medians (microseconds)
of each arm, lsr A over the rival, and B and C over A, which are 1 for a timer without
a place effect. Each shape and dtype is timed twice with each timer.

Run from a checkout's root:
``PYTHONPATH=. python benchmarks/results/2026-12-07-round-order/aaa.py``
"""

import gc
import statistics
import subprocess
import time

import torch
import torch.nn.functional as F

import lsr.torch
from benchmarks.common import Loss, Method, time_methods

SHAPES = [(256, 10), (4096, 1000), (8, 21, 128, 128)]
NAMES = ["lsr A", "rival", "lsr B", "lsr C"]


def before(methods, *, repeats, min_repeat_s):
    """``time_methods``' timed rounds as they were: the same order in every round, no
    untimed call before a batch (``number`` chosen the same way)."""
    numbers = {}
    for method in methods:
        method.step()
        start = time.perf_counter()
        method.step()
        numbers[method.loss.name] = max(1, int(min_repeat_s / (time.perf_counter() - start)))
    times = {method.loss.name: [] for method in methods}
    for _ in range(repeats):
        for method in methods:
            name = method.loss.name
            gc.collect()
            start = time.perf_counter()
            for _ in range(numbers[name]):
                result = None
                result = method.step()
            times[name].append((time.perf_counter() - start) / numbers[name])
            del result
    return {name: {"median_s": statistics.median(values)} for name, values in times.items()}


def methods(logits, ids):
    leaf = logits.detach().requires_grad_(True)

    def step(fn):
        def forward_backward():
            value = fn(leaf, ids)
            (gradient,) = torch.autograd.grad(value, leaf)
            return value, gradient

        return forward_backward

    def ours(x, y):
        return lsr.torch.smooth_ce(x, y, smoothing=0.1)

    def rival(x, y):
        return F.cross_entropy(x, y, label_smoothing=0.1)

    fns = [ours, rival, ours, ours]
    return [Method(Loss(n, "x", f, "eager"), step(f)) for n, f in zip(NAMES, fns, strict=True)]


def main():
    revision = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    capability = torch.backends.cpu.get_cpu_capability()
    threads = torch.get_num_threads()
    print("commit", revision, "torch", torch.__version__, capability, threads, "threads")
    for shape in SHAPES:
        for dtype in (torch.float32, torch.bfloat16):
            generator = torch.Generator().manual_seed(0)
            logits = (3 * torch.randn(shape, generator=generator)).to(dtype)
            ids = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=generator)
            arms = methods(logits, ids)
            for timer in ("before", "after", "before", "after"):
                gc.collect()
                gc.freeze()
                if timer == "before":
                    times = before(arms, repeats=9, min_repeat_s=0.1)
                else:
                    times = time_methods(
                        arms, lambda _: None, repeats=9, min_repeat_s=0.1, max_total_s=1e9
                    )
                gc.unfreeze()
                us = {name: times[name]["median_s"] * 1e6 for name in NAMES}
                a = us["lsr A"]
                name = "x".join(map(str, shape))
                print(
                    f"{timer:6s} {name} {str(dtype).removeprefix('torch.')}: "
                    + "; ".join(f"{n} {us[n]:.0f}" for n in NAMES)
                    + f"; A/rival {a / us['rival']:.3f}; B/A {us['lsr B'] / a:.3f};"
                    f" C/A {us['lsr C'] / a:.3f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
