"""PyTorch's CPU ``exp`` against ``exp2`` of a product (``_inplace_exp``'s two forms),
eager, float32/bfloat16/float64, 2 cores.

Part 1, the kernels: the log-softmax of random logits (3 x standard normal) copied into
a work array and exponentiated in place, ``exp_()`` against ``mul_(log2 e).exp2_()``,
microseconds with the copy's own time taken off (best of 7 rounds of 50).

Part 2, the loss: ``lsr.torch.smooth_ce(..., smoothing=0.1).backward()`` with the
namespace's ``_ONE_OP_EXP`` at 32,768 (``exp2`` above it: the rule before this change)
and at ``sys.maxsize`` (``exp`` always), beside ``F.cross_entropy(label_smoothing=0.1)``,
in one process, the three calls interleaved (the harness's ``time_calls``, medians of
7 rounds of 5 calls), microseconds and each over the rival's.

Run from a checkout's root:
``PYTHONPATH=. python benchmarks/results/2026-12-07-exp-avx512/exp_ab.py``

exp_ab.txt: on 2d79e37, just before the change that takes ``exp`` at every size with
AVX-512; both arms set the rule themselves, so the change does not alter what it
measures. Its loss rows were timed with the harness's steps in the same order every
round, which favoured the later step (the new rule: see
``2026-12-07-call-order/aa.txt``); exp_ab-rotated.txt: on e7f9af0 with the harness of
the commit after it (the order rotated each round, an untimed call before each batch).
The kernel lines are timed apart, the same way in both.
"""

import gc
import math
import subprocess
import sys
import timeit

import torch
import torch.nn.functional as F

import lsr.torch
from benchmarks.common import time_calls
from lsr.torch import _namespace as namespace

KERNEL_SIZES = [32768, 102400, 262144, 1 << 20, 4 << 20]
SHAPES = [(1024, 100), (256, 1000), (1024, 1000), (4096, 1000), (8, 21, 128, 128), (512, 32000)]
LOG2_E = 1.0 / math.log(2.0)


def kernel_forms(base):
    work = base.clone()
    return {
        "copy": lambda: work.copy_(base),
        "exp": lambda: work.copy_(base).exp_(),
        "exp2": lambda: work.copy_(base).mul_(LOG2_E).exp2_(),
    }


def kernels():
    for dtype in (torch.float32, torch.float64):
        for size in KERNEL_SIZES:
            base = torch.log_softmax(3 * torch.randn(size, dtype=dtype), 0)
            forms = kernel_forms(base)
            best = {
                name: min(timeit.repeat(form, number=50, repeat=7)) / 50 * 1e6
                for name, form in forms.items()
            }
            print(
                f"kernel {str(dtype).removeprefix('torch.')} {size}: "
                f"exp {best['exp'] - best['copy']:.1f} exp2 {best['exp2'] - best['copy']:.1f}",
                flush=True,
            )


def steps(logits, ids):
    def lsr_with(one_op_exp):
        def call():
            namespace._ONE_OP_EXP = one_op_exp
            lsr.torch.smooth_ce(logits, ids, smoothing=0.1).backward()

        return call

    return {
        "rival": lambda: F.cross_entropy(logits, ids, label_smoothing=0.1).backward(),
        "exp2 over 32768": lsr_with(1 << 15),
        "exp": lsr_with(sys.maxsize),
    }


def losses():
    default = namespace._ONE_OP_EXP
    for shape in SHAPES:
        for dtype in (torch.float32, torch.bfloat16, torch.float64):
            generator = torch.Generator().manual_seed(0)
            logits = (3 * torch.randn(shape, generator=generator)).to(dtype).requires_grad_()
            ids = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=generator)
            calls = steps(logits, ids)
            for call in calls.values():
                call()
            gc.collect()
            gc.freeze()
            times = time_calls(calls, lambda _: None, calls=5, repeats=7, max_pair_s=10.0)
            gc.unfreeze()
            namespace._ONE_OP_EXP = default
            us = {name: value["median_s"] * 1e6 for name, value in times.items()}
            rival = us["rival"]
            parts = [f"rival {rival:.0f}"] + [
                f"{name} {us[name]:.0f} ({us[name] / rival:.3f})"
                for name in ("exp2 over 32768", "exp")
            ]
            name = "x".join(map(str, shape))
            print(f"{name} {str(dtype).removeprefix('torch.')}: {'; '.join(parts)}", flush=True)


def main():
    revision = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    capability = torch.backends.cpu.get_cpu_capability()
    threads = torch.get_num_threads()
    print("commit", revision, "torch", torch.__version__, capability, threads, "threads")
    kernels()
    losses()


if __name__ == "__main__":
    main()
