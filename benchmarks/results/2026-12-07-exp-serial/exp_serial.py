"""PyTorch's CPU ``exp_`` on at most 32,768 values (its grain size for a parallel loop)
against ``exp2`` of a product, 2 AVX-512 cores, eager.

Part 1, the kernels: the log-softmax of standard normal logits copied into a work array
and exponentiated in place, ``exp_()`` against ``mul_(log2 e).exp2_()``, microseconds
with the copy's own time taken off (best of 9 rounds of 300), with
``torch.set_num_threads(1)`` and with 2 threads, float32 and float64.

Part 2, the loss: ``lsr.torch.smooth_ce(..., smoothing=0.1)`` and its gradient
(``torch.autograd.grad``) with the namespace's ``inplace_exp`` as ``exp_`` at every size
(the rule before this change) and as this change's rule (``exp2`` of the product from
2,049 to 32,768 values with more than one thread), beside
``F.cross_entropy(label_smoothing=0.1)``, in one process, the three calls taking turns
(the harness's ``time_calls``: medians of 11 rounds of 20 calls), microseconds and each
over the rival's.

Run from a checkout's root:
``PYTHONPATH=. python benchmarks/results/2026-12-07-exp-serial/exp_serial.py``

**Not adopted** (the rule was committed in 902252e and reverted in df731b1): a review
measured (CPU time per thread, not committed) that PyTorch's ``exp_`` splits across
threads from 2,048 values, so its slow region here is likely not "on the calling thread"
but the split of a kernel that follows ``copy_``, which runs on one thread up to 32,768
values (hence the jump at 32,769); the two-thread penalty below 2,048 values (256: 1.82
against 0.77) is not explained either. In the loss the step before the exponential is
the log-softmax, whose split depends on the shape. (At df731b1 and after, both lsr
arms run the same code.) And at the loss level the row the
rule does not touch, 64 x 1000 (64,000 values), moved as much as the rows it does
(float32 1.058 -> 1.008, bfloat16 1.204 -> 1.163, the same code in both arms): the gains
below are within the noise of this comparison.

exp_serial.txt: run on 51a711e with this change's ``_inplace_exp`` in the working tree
(the commit line names the last commit): the "this rule" arm is that change, the other
arm sets ``exp_`` itself. The script was then reshaped (its closures made by functions,
for the linter) with no change to what it measures.
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
from lsr.torch import _namespace

SIZES = [256, 1024, 2048, 2560, 8192, 16384, 32768, 32769, 65536]
SHAPES = [(256, 10), (256, 100), (1024, 32), (128, 256), (32, 1000), (64, 1000)]
LOG2_E = 1.0 / math.log(2.0)


def every_size_exp(x):
    return x.exp_()


def kernel_forms(base):
    work = base.clone()
    return {
        "copy": lambda: work.copy_(base),
        "exp": lambda: work.copy_(base).exp_(),
        "exp2": lambda: work.copy_(base).mul_(LOG2_E).exp2_(),
    }


def steps(logits, ids, rule):
    def lsr_with(inplace_exp):
        def call():
            _namespace.xp.inplace_exp = inplace_exp
            loss = lsr.torch.smooth_ce(logits, ids, smoothing=0.1)
            return torch.autograd.grad(loss, logits)

        return call

    return {
        "rival": lambda: torch.autograd.grad(
            F.cross_entropy(logits, ids, label_smoothing=0.1), logits
        ),
        "exp every size": lsr_with(every_size_exp),
        "this rule": lsr_with(rule),
    }


def kernels():
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for dtype in (torch.float32, torch.float64):
            for size in SIZES:
                base = torch.log_softmax(torch.randn(size, dtype=dtype), 0)
                forms = kernel_forms(base)
                best = {
                    name: min(timeit.repeat(form, number=300, repeat=9)) / 300 * 1e6
                    for name, form in forms.items()
                }
                print(
                    f"kernel {threads} threads {str(dtype).removeprefix('torch.')} {size}: "
                    f"exp {best['exp'] - best['copy']:.2f} exp2 {best['exp2'] - best['copy']:.2f}",
                    flush=True,
                )
    torch.set_num_threads(2)


def losses():
    rule = _namespace.xp.inplace_exp
    for shape in SHAPES:
        for dtype in (torch.float32, torch.bfloat16):
            generator = torch.Generator().manual_seed(0)
            logits = torch.randn(shape, generator=generator).to(dtype).requires_grad_()
            ids = torch.randint(0, shape[1], (shape[0],), generator=generator)

            calls = steps(logits, ids, rule)
            for call in calls.values():
                call()
            gc.collect()
            gc.freeze()
            times = time_calls(calls, lambda _: None, calls=20, repeats=11, max_pair_s=5.0)
            gc.unfreeze()
            _namespace.xp.inplace_exp = rule
            us = {name: value["median_s"] * 1e6 for name, value in times.items()}
            rival = us["rival"]
            parts = [f"rival {rival:.1f}"] + [
                f"{name} {us[name]:.1f} ({us[name] / rival:.3f})"
                for name in ("exp every size", "this rule")
            ]
            name = "x".join(map(str, shape))
            print(f"{name} {str(dtype).removeprefix('torch.')}: {'; '.join(parts)}", flush=True)


def main():
    revision = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    capability = torch.backends.cpu.get_cpu_capability()
    print("commit", revision, "torch", torch.__version__, capability, sys.version.split()[0])
    kernels()
    losses()


if __name__ == "__main__":
    main()
