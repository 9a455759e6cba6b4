"""Eager PyTorch on the CPU, class ids, smoothing 0.1, mean: ``lsr.torch.smooth_ce``
against ``F.cross_entropy(label_smoothing=0.1)``, forward + backward ("f+b") and the
loss alone ("fwd", logits that need no gradient), float32 and bfloat16. Microseconds,
medians of 9 rounds with the four calls interleaved (the harness's ``time_calls``),
printed as "lsr/rival = ratio".

Run from a checkout's root:
``PYTHONPATH=. python benchmarks/results/2026-12-07-half-log-softmax/ab.py``

before-be90d3d.txt: at be90d3d. after.txt: the same checkout with the namespace's
half-precision log-softmax (convert, then in place) applied before it was committed,
which is why its first line names be90d3d too; run right after, on the same machine
(Intel Xeon with AVX-512, 2 cores). The change then made its new array by
``x.to(dtype)``; since review it is a contiguous ``torch.empty`` filled by ``copy_``,
the same operations for these contiguous logits. The machine is noisy: the rival's own times moved
by up to 2.4x between the two runs (2048 x 4000 float32, forward + backward); compare
ratios row by row, and the loss alone in bfloat16 above all.
"""

import gc
import subprocess

import torch
import torch.nn.functional as F

import lsr.torch
from benchmarks.common import time_calls

SHAPES = [
    (256, 100),
    (1024, 100),
    (256, 1000),
    (1024, 1000),
    (4096, 1000),
    (2048, 4000),
    (4, 21, 64, 64),
    (8, 21, 128, 128),
]


def steps(logits, ids):
    detached = logits.detach()
    return {
        "rival f+b": lambda: F.cross_entropy(logits, ids, label_smoothing=0.1).backward(),
        "lsr f+b": lambda: lsr.torch.smooth_ce(logits, ids, smoothing=0.1).backward(),
        "rival fwd": lambda: F.cross_entropy(detached, ids, label_smoothing=0.1),
        "lsr fwd": lambda: lsr.torch.smooth_ce(detached, ids, smoothing=0.1),
    }


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
            logits = (3 * torch.randn(shape, generator=generator)).to(dtype).requires_grad_()
            label_shape = (shape[0], *shape[2:])
            ids = torch.randint(0, shape[1], label_shape, generator=generator)
            calls = steps(logits, ids)
            for step in calls.values():
                step()
            gc.collect()
            gc.freeze()
            times = time_calls(calls, lambda _: None, calls=10, repeats=9, max_pair_s=8.0)
            gc.unfreeze()
            us = {name: value["median_s"] * 1e6 for name, value in times.items()}
            parts = []
            for part in ("f+b", "fwd"):
                mine, rival = us[f"lsr {part}"], us[f"rival {part}"]
                parts.append(f"{part} {mine:.0f}/{rival:.0f} = {mine / rival:.3f}")
            name = "x".join(map(str, shape))
            print(f"{name} {str(dtype).removeprefix('torch.')}: {'; '.join(parts)}", flush=True)


if __name__ == "__main__":
    main()
