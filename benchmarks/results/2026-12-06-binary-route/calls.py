"""Small eager PyTorch calls of the binary loss, forward + backward on the CPU, at three
smoothings: each of lsr's entry points against the framework's own loss, in one process
(medians of 7 rounds, the entry points of one row interleaved within each round: the
harness's ``time_calls``).

``lsr.torch.smooth_bce``, ``binary_cross_entropy_with_logits`` and
``SmoothBCEWithLogitsLoss`` with smoothing ``eps`` towards 1/2 against
``F.binary_cross_entropy_with_logits`` on targets smoothed by hand
(``(1 - eps) y + eps / 2``; at ``eps = 0`` the raw targets), 10% ones. ``eps = 0.1``
takes PyTorch's own kernel on lsr's side too (``_core.kernel_form_applies``); 0.05 and 0
(the drop-ins' default) take lsr's own small path. Softmax rows as in
``../2026-12-06-route/calls.py`` for reference. Each row prints the rival's microseconds
and each entry point's ratio to it.

Run from a checkout's root, the same script on two commits in a row:
``PYTHONPATH=. python benchmarks/results/2026-12-06-binary-route/calls.py``
"""

import platform
import subprocess

import torch
import torch.nn.functional as F

import lsr.torch
from benchmarks.common import time_calls


def commit():
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()


def softmax_steps(logits, ids, module):
    return {
        "rival": lambda: F.cross_entropy(logits, ids, label_smoothing=0.1).backward(),
        "smooth_ce": lambda: lsr.torch.smooth_ce(logits, ids, smoothing=0.1).backward(),
        "cross_entropy": lambda: lsr.torch.cross_entropy(
            logits, ids, label_smoothing=0.1
        ).backward(),
        "module": lambda: module(logits, ids).backward(),
    }


def binary_steps(logits, target, eps):
    module = lsr.torch.SmoothBCEWithLogitsLoss(label_smoothing=eps)
    smoothed = (1 - eps) * target + eps / 2 if eps else target
    return {
        "rival": lambda: F.binary_cross_entropy_with_logits(
            logits, (1 - eps) * target + eps / 2 if eps else smoothed
        ).backward(),
        "smooth_bce": lambda: lsr.torch.smooth_bce(logits, target, smoothing=eps).backward(),
        "binary_cross_entropy_with_logits": lambda: lsr.torch.binary_cross_entropy_with_logits(
            logits, target, label_smoothing=eps
        ).backward(),
        "module": lambda: module(logits, target).backward(),
    }


def rows():
    ce_module = lsr.torch.SmoothCrossEntropyLoss(label_smoothing=0.1)
    for shape in [(8, 4), (256, 10)]:
        for dtype in (torch.float32, torch.bfloat16):
            logits = torch.randn(*shape, dtype=dtype).requires_grad_()
            ids = torch.randint(0, shape[1], shape[:1])
            yield f"softmax {shape[0]}x{shape[1]} {dtype}", softmax_steps(logits, ids, ce_module)
            target = (torch.rand(shape) < 0.1).to(dtype)
            for eps in (0.1, 0.05, 0.0):
                name = f"binary {shape[0]}x{shape[1]} {dtype} eps={eps}"
                yield name, binary_steps(logits, target, eps)


def main():
    torch.manual_seed(0)
    print(
        f"commit {commit()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}, {platform.processor()}"
    )
    for name, steps in rows():
        for step in steps.values():
            for _ in range(200):
                step()
        timed = time_calls(steps, lambda result: None, calls=1000, repeats=7, max_pair_s=60.0)
        rival = timed["rival"]["median_s"] * 1e6
        ratios = " ".join(
            f"{key} {value['median_s'] * 1e6 / rival:.2f}"
            for key, value in timed.items()
            if key != "rival"
        )
        print(f"{name}: rival {rival:.1f} us; lsr / rival: {ratios}", flush=True)


if __name__ == "__main__":
    main()
