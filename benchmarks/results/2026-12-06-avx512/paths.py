"""Eager PyTorch on the CPU, forward + backward, class ids: ``lsr.torch.smooth_ce`` on
each of its two paths for a gradient, against ``F.cross_entropy(label_smoothing=0.1)``,
at shapes from 256 x 100 up to a few million logits, float32 and bfloat16:

* ``fused``: ``SmoothCEFused``, the blocked pass (``is_small`` patched to say no);
* ``small``: ``SmoothCESmall``, the core's ``log_softmax_loss_and_grad`` (``is_small``
  patched to say yes).

One process; medians of 5 rounds, the three calls interleaved within each round (the
harness's ``time_calls``). Each row prints microseconds and the ratio to the rival.

Run from a checkout's root:
``PYTHONPATH=. python benchmarks/results/2026-12-06-avx512/paths.py``
"""

import platform
import subprocess

import torch
import torch.nn.functional as F

import lsr.torch
from benchmarks.common import time_calls
from lsr.torch import _functional

SHAPES = [
    (256, 100),
    (1024, 100),
    (4096, 100),
    (256, 1000),
    (1024, 1000),
    (64, 10000),
    (8192, 128),
    (2048, 500),
    (4, 21, 64, 64),
    (4096, 1000),
    (8, 21, 128, 128),
]
IS_SMALL = _functional.is_small


def commit():
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()


def rival(logits, ids):
    return lambda: F.cross_entropy(logits, ids, label_smoothing=0.1).backward()


def on_path(small, logits, ids):
    def run():
        _functional.is_small = lambda *arguments: small
        try:
            loss = lsr.torch.smooth_ce(logits, ids, smoothing=0.1)
            expected = "SmoothCESmall" if small else "SmoothCEFused"
            assert type(loss.grad_fn).__name__.startswith(expected), loss.grad_fn
            loss.backward()
        finally:
            _functional.is_small = IS_SMALL

    return run


def main():
    torch.manual_seed(0)
    print(
        f"commit {commit()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}, {platform.processor()}"
    )
    for dtype in (torch.float32, torch.bfloat16):
        for shape in SHAPES:
            logits = torch.randn(*shape, dtype=dtype, requires_grad=True)
            ids = torch.randint(0, shape[1], shape[:1] + shape[2:])
            steps = {
                "rival": rival(logits, ids),
                "fused": on_path(False, logits, ids),
                "small": on_path(True, logits, ids),
            }
            for step in steps.values():
                step()
            # (About 0.1 s per timing: calls from the size.)
            calls = max(5, int(2e7 // logits.numel()) // 10)
            timed = time_calls(steps, lambda result: None, calls=calls, repeats=5, max_pair_s=60.0)
            us = {key: value["median_s"] * 1e6 for key, value in timed.items()}
            name = "x".join(map(str, shape))
            print(
                f"{name} {dtype}: rival {us['rival']:.0f} us, fused {us['fused']:.0f} "
                f"({us['fused'] / us['rival']:.2f}), small {us['small']:.0f} "
                f"({us['small'] / us['rival']:.2f})",
                flush=True,
            )


if __name__ == "__main__":
    main()
