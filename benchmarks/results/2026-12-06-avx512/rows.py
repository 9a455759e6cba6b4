"""Eager PyTorch on the CPU: ``lsr.torch.smooth_ce`` and the drop-in
``lsr.torch.cross_entropy`` against ``F.cross_entropy(label_smoothing=0.1)`` on class
ids, forward + backward and the loss alone (``torch.no_grad()``), in one process
(medians of 5 rounds, the three calls of a row interleaved within each round: the
harness's ``time_calls``), at a small, two medium, and the segmentation shape of the
benchmark matrix, float32 and bfloat16. Each row prints the rival's microseconds and
each entry point's ratio to it.

Run from a checkout's root, the same script on two commits in a row:
``PYTHONPATH=. python benchmarks/results/2026-12-06-avx512/rows.py``
"""

import platform
import subprocess

import torch
import torch.nn.functional as F

import lsr.torch
from benchmarks.common import time_calls

SHAPES = [(256, 10), (1024, 100), (4096, 1000), (8, 21, 256, 256)]
LOSSES = {
    "rival": lambda z, y: F.cross_entropy(z, y, label_smoothing=0.1),
    "smooth_ce": lambda z, y: lsr.torch.smooth_ce(z, y, smoothing=0.1),
    "cross_entropy": lambda z, y: lsr.torch.cross_entropy(z, y, label_smoothing=0.1),
}


def commit():
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()


def step(loss, logits, ids, mode):
    if mode == "forward":

        def forward():
            with torch.no_grad():
                loss(logits, ids)

        return forward
    return lambda: loss(logits, ids).backward()


def main():
    torch.manual_seed(0)
    print(
        f"commit {commit()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}, {platform.processor()}"
    )
    for mode in ("forward+backward", "forward"):
        for shape in SHAPES:
            for dtype in (torch.float32, torch.bfloat16):
                logits = torch.randn(*shape, dtype=dtype, requires_grad=True)
                ids = torch.randint(0, shape[1], shape[:1] + shape[2:])
                steps = {key: step(loss, logits, ids, mode) for key, loss in LOSSES.items()}
                for each in steps.values():
                    each()
                # (About 0.1 s per timing: calls from the size.)
                calls = max(3, min(2000, int(2e7 // logits.numel()) // 10))
                timed = time_calls(
                    steps, lambda result: None, calls=calls, repeats=5, max_pair_s=60.0
                )
                rival = timed["rival"]["median_s"] * 1e6
                ratios = " ".join(
                    f"{key} {value['median_s'] * 1e6 / rival:.2f}"
                    for key, value in timed.items()
                    if key != "rival"
                )
                name = "x".join(map(str, shape))
                print(
                    f"{mode} {name} {dtype}: rival {rival:.1f} us; lsr / rival: {ratios}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
