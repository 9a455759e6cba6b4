"""Eager PyTorch on the CPU, forward + backward: ``lsr.torch.smooth_ce`` and the drop-in
``lsr.torch.cross_entropy`` against ``F.cross_entropy(label_smoothing=0.1)`` on class
ids, in one process (medians of 5 rounds, the three calls of a row interleaved within
each round: the harness's ``time_calls``), at a small, a medium and a segmentation
shape, float32 and bfloat16. Each row prints the rival's microseconds and each entry
point's ratio to it.

Run from a checkout's root, the same script on two commits in a row:
``PYTHONPATH=. python benchmarks/results/2026-12-06-unread-ids/rows.py``
"""

import platform
import subprocess

import torch
import torch.nn.functional as F

import lsr.torch
from benchmarks.common import time_calls

# (logits' shape, number of classes, calls per timing)
SHAPES = [((256, 10), 10, 2000), ((4096, 1000), 1000, 20), ((2, 21, 128, 128), 21, 20)]


def commit():
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()


def _steps(logits, ids):
    return {
        "rival": lambda: F.cross_entropy(logits, ids, label_smoothing=0.1).backward(),
        "smooth_ce": lambda: lsr.torch.smooth_ce(logits, ids, smoothing=0.1).backward(),
        "cross_entropy": lambda: lsr.torch.cross_entropy(
            logits, ids, label_smoothing=0.1
        ).backward(),
    }


def main():
    torch.manual_seed(0)
    print(
        f"commit {commit()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}, {platform.processor()}"
    )
    for shape, num_classes, calls in SHAPES:
        for dtype in (torch.float32, torch.bfloat16):
            logits = torch.randn(*shape, dtype=dtype, requires_grad=True)
            ids = torch.randint(0, num_classes, shape[:1] + shape[2:])
            steps = _steps(logits, ids)
            for step in steps.values():
                for _ in range(max(5, calls // 10)):
                    step()
            timed = time_calls(steps, lambda result: None, calls=calls, repeats=5, max_pair_s=60.0)
            rival = timed["rival"]["median_s"] * 1e6
            ratios = " ".join(
                f"{key} {value['median_s'] * 1e6 / rival:.2f}"
                for key, value in timed.items()
                if key != "rival"
            )
            name = "x".join(map(str, shape))
            print(f"{name} {dtype}: rival {rival:.1f} us; lsr / rival: {ratios}", flush=True)


if __name__ == "__main__":
    main()
