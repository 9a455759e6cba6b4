"""Eager PyTorch on the CPU, forward + backward: ``lsr.torch.smooth_bce`` (smoothing 0.1
towards 1/2, 10% positive targets) with the binary loss's small-input bound at 65,536
logits (``now``) and at one block, 1,048,576 (``at 1M``, the softmax loss's bound),
against ``F.binary_cross_entropy_with_logits`` on targets smoothed by hand. Medians of
5 rounds of the three in turn (about 0.15 s each), microseconds and ratios.

Run from a checkout's root: ``PYTHONPATH=. python
benchmarks/results/2026-12-06-avx512/binary_bound.py``
"""

import platform
import statistics
import time

import torch
import torch.nn.functional as F

import lsr.torch
from lsr.torch import _binary

BOUND = _binary.SMALL_BINARY_ELEMENTS


def per_call_us(fn, budget_s=0.15):
    for _ in range(5):
        fn()
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed > budget_s and calls >= 5:
            return elapsed / calls * 1e6


def with_bound(bound, fn):
    def run():
        _binary.SMALL_BINARY_ELEMENTS = bound
        try:
            fn()
        finally:
            _binary.SMALL_BINARY_ELEMENTS = BOUND

    return run


def main():
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, {platform.processor()}"
    )
    for dtype in (torch.float32, torch.bfloat16):
        for shape in [(1024, 80), (4096, 80), (12000, 80)]:
            logits = torch.randn(*shape, dtype=dtype, requires_grad=True)
            targets = (torch.rand(*shape) < 0.1).to(dtype)

            def rival(logits=logits, targets=targets):
                F.binary_cross_entropy_with_logits(logits, targets * 0.9 + 0.05).backward()

            def ours(logits=logits, targets=targets):
                lsr.torch.smooth_bce(logits, targets, smoothing=0.1).backward()

            calls = {
                "rival": rival,
                "now": with_bound(BOUND, ours),
                "at 1M": with_bound(1 << 20, ours),
            }
            times = {name: [] for name in calls}
            for _ in range(5):
                for name, fn in calls.items():
                    times[name].append(per_call_us(fn))
            us = {name: statistics.median(t) for name, t in times.items()}
            print(
                f"{'x'.join(map(str, shape))} {dtype}: rival {us['rival']:.0f} us, now "
                f"{us['now']:.0f} ({us['now'] / us['rival']:.2f}), at 1M {us['at 1M']:.0f} "
                f"({us['at 1M'] / us['rival']:.2f})",
                flush=True,
            )


if __name__ == "__main__":
    main()
