"""Eager PyTorch on the CPU, forward + backward, class ids, smoothing 0.1, mean:
``F.cross_entropy(label_smoothing=0.1)`` ("rival") against ``lsr.torch.smooth_ce`` sent
to the blocked pass (``SMALL_ELEMENTS = 0``: ``SmoothCEFused``, the path these inputs
took before 4b09576) and to the log-softmax form block by block of rows (the default
since 4b09576: ``SmoothCESmall``), in one process, the three calls interleaved.
Microseconds, medians of 7 rounds of 5 calls (the harness's ``time_calls``), and each
lsr path's time over the rival's.

Run from a checkout's root:
``PYTHONPATH=. python benchmarks/results/2026-12-07-log-softmax-blocks/paths.py``

paths.txt: on 4b09576, by this script before its three calls moved into ``steps`` for
the linter (the same calls), with the harness's steps in the same order every round,
which favoured the later step (the log-softmax form: see
``2026-12-07-call-order/aa.txt``). paths-rotated.txt: on e7f9af0 (with the exp and the
block size of the two changes after 4b09576, in both paths) and the harness of the
commit after it (the order rotated each round, an untimed call before each batch).
"""

import gc
import subprocess

import torch
import torch.nn.functional as F

import lsr.torch
from benchmarks.common import time_calls
from lsr.torch import _autograd as autograd

SHAPES = [
    (4096, 1000),
    (16384, 1000),
    (2048, 4000),
    (512, 32000),
    (64, 128000),
    (65536, 100),
    (8, 21, 128, 128),
    (8, 21, 256, 256),
]


def steps(logits, ids, default):
    def lsr_with(bound):
        def call():
            autograd.SMALL_ELEMENTS = bound
            lsr.torch.smooth_ce(logits, ids, smoothing=0.1).backward()

        return call

    return {
        "rival": lambda: F.cross_entropy(logits, ids, label_smoothing=0.1).backward(),
        "blocked pass": lsr_with(0),
        "log-softmax form": lsr_with(default),
    }


def main():
    revision = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    capability = torch.backends.cpu.get_cpu_capability()
    threads = torch.get_num_threads()
    print("commit", revision, "torch", torch.__version__, capability, threads, "threads")
    default = autograd.SMALL_ELEMENTS
    for shape in SHAPES:
        for dtype in (torch.float32, torch.bfloat16):
            generator = torch.Generator().manual_seed(0)
            logits = (3 * torch.randn(shape, generator=generator)).to(dtype).requires_grad_()
            ids = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=generator)

            calls = steps(logits, ids, default)
            for call in calls.values():
                call()
            gc.collect()
            gc.freeze()
            times = time_calls(calls, lambda _: None, calls=5, repeats=7, max_pair_s=10.0)
            gc.unfreeze()
            autograd.SMALL_ELEMENTS = default
            us = {name: value["median_s"] * 1e6 for name, value in times.items()}
            rival = us["rival"]
            parts = [f"rival {rival:.0f}"] + [
                f"{name} {us[name]:.0f} ({us[name] / rival:.3f})"
                for name in ("blocked pass", "log-softmax form")
            ]
            name = "x".join(map(str, shape))
            print(f"{name} {str(dtype).removeprefix('torch.')}: {'; '.join(parts)}", flush=True)


if __name__ == "__main__":
    main()
