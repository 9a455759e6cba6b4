"""Block sizes of eager PyTorch's CPU paths, in one process per run, the calls of a row
interleaved (the harness's ``time_calls``, medians of 9 rounds of 5 calls),
microseconds and each over the rival's time.

Arms (``lsr.torch._autograd``'s ``BLOCK_ELEMENTS``, ``ROW_BLOCK_ELEMENTS``):
"1M" (1 Mi, 1 Mi: every layout in blocks of about 1 Mi logits, the rule before this
change), "rows 512K" (1 Mi, 512 Ki: the rule since, 2-D logits over 1 Mi in blocks of
at most 512 Ki) and, for logits that the new rule leaves alone, "512K" (512 Ki, 512 Ki:
every layout in blocks of 512 Ki, a single block of 1 Mi cut in two too).

Modes: "f+b" forward + backward of ``smooth_ce(smoothing=0.1)`` (the log-softmax form),
"z-loss f+b" the same with ``z_loss=1e-4`` (the blocked pass), "alone" the loss without
a gradient, "bce f+b" ``smooth_bce(smoothing=0.1)`` on 10% positive multi-hot labels.
Rivals: ``F.cross_entropy(label_smoothing=0.1)`` (without ``z_loss``; the same rival for
"z-loss f+b") and ``F.binary_cross_entropy_with_logits`` of targets smoothed by hand.

Run from a checkout's root:
``PYTHONPATH=. python benchmarks/results/2026-12-07-row-blocks/blocks.py``

blocks.txt: on f912a75, with the harness's steps in the same order every round, which
favoured the later step (the new rule: see ``2026-12-07-call-order/aa.txt``);
blocks-rotated.txt: on e7f9af0 with the harness of the commit after it (the order
rotated each round, an untimed call before each batch).
"""

import gc
import subprocess

import torch
import torch.nn.functional as F

import lsr.torch
from benchmarks.common import time_calls
from lsr.torch import _autograd as autograd

MI = 1 << 20
ARMS = {"1M": (MI, MI), "rows 512K": (MI, MI // 2), "512K": (MI // 2, MI // 2)}
ROWS = [(4096, 1000), (16384, 1000), (2048, 4000), (512, 32000), (64, 128000), (65536, 100)]
OTHERS = [(1024, 1000), (8, 21, 128, 128)]
MODES = ["f+b", "z-loss f+b", "alone", "bce f+b"]


def lsr_call(mode, logits, target, arm):
    blocks, row_blocks = ARMS[arm]

    def call():
        autograd.BLOCK_ELEMENTS, autograd.ROW_BLOCK_ELEMENTS = blocks, row_blocks
        if mode == "bce f+b":
            lsr.torch.smooth_bce(logits, target, smoothing=0.1).backward()
        elif mode == "alone":
            lsr.torch.smooth_ce(logits, target, smoothing=0.1)
        else:
            z_loss = 1e-4 if mode == "z-loss f+b" else 0.0
            lsr.torch.smooth_ce(logits, target, smoothing=0.1, z_loss=z_loss).backward()

    return call


def rival_call(mode, logits, target):
    if mode == "bce f+b":
        smoothed = target * 0.9 + 0.05
        return lambda: F.binary_cross_entropy_with_logits(logits, smoothed).backward()
    if mode == "alone":
        return lambda: F.cross_entropy(logits, target, label_smoothing=0.1)
    return lambda: F.cross_entropy(logits, target, label_smoothing=0.1).backward()


def row(shape, dtype, mode, arms):
    generator = torch.Generator().manual_seed(0)
    logits = (3 * torch.randn(shape, generator=generator)).to(dtype)
    logits.requires_grad_(mode != "alone")
    if mode == "bce f+b":
        target = (torch.rand(shape, generator=generator) < 0.1).to(dtype)
    else:
        target = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=generator)
    calls = {"rival": rival_call(mode, logits, target)}
    calls.update({arm: lsr_call(mode, logits, target, arm) for arm in arms})
    for call in calls.values():
        call()
    gc.collect()
    gc.freeze()
    times = time_calls(calls, lambda _: None, calls=5, repeats=9, max_pair_s=10.0)
    gc.unfreeze()
    autograd.BLOCK_ELEMENTS, autograd.ROW_BLOCK_ELEMENTS = ARMS["rows 512K"]
    us = {name: value["median_s"] * 1e6 for name, value in times.items()}
    rival = us["rival"]
    parts = [f"rival {rival:.0f}"]
    parts += [f"{arm} {us[arm]:.0f} ({us[arm] / rival:.3f})" for arm in arms]
    name = "x".join(map(str, shape))
    print(f"{mode} {name} {str(dtype).removeprefix('torch.')}: {'; '.join(parts)}", flush=True)


def main():
    revision = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    capability = torch.backends.cpu.get_cpu_capability()
    threads = torch.get_num_threads()
    print("commit", revision, "torch", torch.__version__, capability, threads, "threads")
    for mode in MODES:
        for dtype in (torch.float32, torch.bfloat16):
            for shape in ROWS:
                row(shape, dtype, mode, ["1M", "rows 512K"])
            if mode != "bce f+b":
                for shape in OTHERS:
                    row(shape, dtype, mode, ["1M", "512K"])


if __name__ == "__main__":
    main()
