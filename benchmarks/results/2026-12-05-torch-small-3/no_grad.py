"""The loss alone under torch.no_grad() (evaluation), lsr against F.cross_entropy.

Run from the repository's root: ``python benchmarks/results/2026-12-05-torch-small-3/no_grad.py``.
Best of 5 repeats of n calls in a row, each side in turn, one process; microseconds per
call and the ratio lsr / F.cross_entropy(label_smoothing=0.1)."""

import time

import torch
import torch.nn.functional as F

import lsr.torch as lt

torch.set_num_threads(2)


def best(fn, n):
    for _ in range(5):
        fn()
    times = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - start) / n * 1e6)
    return min(times)


def case(shape, dtype, ignored, n):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(shape, generator=generator).to(dtype)
    positions = shape[:1] + shape[2:]
    target = torch.randint(0, shape[1], positions, generator=generator)
    if ignored:
        target[torch.rand(positions, generator=generator) < ignored] = -100
    with torch.no_grad():
        ours = best(lambda: lt.smooth_ce(logits, target, smoothing=0.1), n)
        theirs = best(lambda: F.cross_entropy(logits, target, label_smoothing=0.1), n)
    print(
        f"{shape} {dtype} ignored={ignored}: lsr {ours:.0f} us, rival {theirs:.0f} us, "
        f"ratio {ours / theirs:.2f}"
    )


if __name__ == "__main__":
    for dtype in (torch.float32, torch.bfloat16):
        case((256, 10), dtype, 0.0, 2000)
        case((4096, 1000), dtype, 0.0, 20)
        case((512, 32000), dtype, 0.0, 5)
        case((2, 21, 128, 128), dtype, 0.05, 50)
        case((2, 21, 128, 128), dtype, 0.0, 50)
