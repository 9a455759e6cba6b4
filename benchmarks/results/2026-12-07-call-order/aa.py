"""An A/A check of the harness's call order: ``F.cross_entropy(label_smoothing=0.1)``
and two identical arms of ``lsr.torch.smooth_ce(smoothing=0.1)`` (forward + backward,
eager, CPU), timed in one process with the steps taking turns in the same order every
round (``fixed``: ``time_calls`` before 2026-12-07) and with the order rotated by one
step each round and one untimed call of a step before each of its batches (``rotated``:
``time_calls`` since). Prints each lsr arm over the rival
(medians of 9 rounds of 5 calls, microseconds) and the second arm over the first, which
is 1 for a harness without a place effect.

Run from a checkout's root:
``PYTHONPATH=. python benchmarks/results/2026-12-07-call-order/aa.py``
"""

import gc
import statistics
import subprocess
import time

import torch
import torch.nn.functional as F

import lsr.torch
from benchmarks.common import time_calls

SHAPES = [(256, 1000), (4096, 1000), (8, 21, 128, 128)]


def fixed_order(steps, *, calls, repeats):
    """``time_calls`` as it was: the same order in every round."""
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(calls):
                step()
            times[name].append((time.perf_counter() - start) / calls)
    return {name: {"median_s": statistics.median(values)} for name, values in times.items()}


def steps(logits, ids):
    def lsr_call():
        lsr.torch.smooth_ce(logits, ids, smoothing=0.1).backward()

    return {
        "rival": lambda: F.cross_entropy(logits, ids, label_smoothing=0.1).backward(),
        "lsr A": lsr_call,
        "lsr B": lsr_call,
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
            ids = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=generator)
            calls = steps(logits, ids)
            for call in calls.values():
                call()
            for order in ("fixed", "rotated"):
                gc.collect()
                gc.freeze()
                if order == "fixed":
                    times = fixed_order(calls, calls=5, repeats=9)
                else:
                    times = time_calls(calls, lambda _: None, calls=5, repeats=9, max_pair_s=1e9)
                gc.unfreeze()
                us = {name: value["median_s"] * 1e6 for name, value in times.items()}
                rival, first, second = us["rival"], us["lsr A"], us["lsr B"]
                name = "x".join(map(str, shape))
                print(
                    f"{order} {name} {str(dtype).removeprefix('torch.')}: rival {rival:.0f}; "
                    f"A {first:.0f} ({first / rival:.3f}); B {second:.0f} ({second / rival:.3f});"
                    f" B/A {second / first:.3f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
