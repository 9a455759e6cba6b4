"""Eager PyTorch on the CPU, the loss alone at 4096 x 1000: how far lsr's call is above
the steps it cannot do without. In one process, the calls taking turns (the harness's
``time_calls``: medians of 9 rounds of 5 calls), milliseconds:

* ``rival``: ``F.cross_entropy(logits, ids, label_smoothing=0.1)``;
* ``lsr``: ``lsr.torch.smooth_ce(logits, ids, smoothing=0.1)``;
* ``log_softmax whole``: ``torch.log_softmax(logits, 1, dtype=torch.float32)``;
* ``log_softmax blocks``: the same into one float32 block of 524 rows at a time (lsr's
  blocks; half precision copied into the block first), nothing else;
* ``blocks + sums``: that, plus each block's sum and the sum of its log-probabilities
  at the ids (the terms lsr's form reads), added up at the end: the floor of lsr's
  formulation, written by hand without its Python.

Run from a checkout's root:
``PYTHONPATH=. python benchmarks/results/2026-12-07-loss-alone/floor.py``
"""

import gc
import subprocess

import torch
import torch.nn.functional as F

import lsr.torch
from benchmarks.common import time_calls

SHAPE = (4096, 1000)


def steps(logits, ids):
    dtype = logits.dtype
    rows = 524288 // SHAPE[1]
    scratch = torch.empty((rows, SHAPE[1]))
    blocks = [slice(start, start + rows) for start in range(0, SHAPE[0], rows)]

    def log_softmax_blocks(with_sums):
        totals = []
        for block in blocks:
            part = logits[block]
            work = scratch[: part.shape[0]]
            if dtype != torch.float32:
                work.copy_(part)
                torch.log_softmax(work, 1, out=work)
            else:
                torch.log_softmax(part, 1, out=work)
            if with_sums:
                totals.append(work.sum())
                totals.append(work.gather(1, ids[block].unsqueeze(1)).sum())
        return torch.stack(totals).sum() if with_sums else None

    return {
        "rival": lambda: F.cross_entropy(logits, ids, label_smoothing=0.1),
        "lsr": lambda: lsr.torch.smooth_ce(logits, ids, smoothing=0.1),
        "log_softmax whole": lambda: torch.log_softmax(logits, 1, dtype=torch.float32),
        "log_softmax blocks": lambda: log_softmax_blocks(False),
        "blocks + sums": lambda: log_softmax_blocks(True),
    }


def main():
    revision = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    print("commit", revision, "torch", torch.__version__, torch.backends.cpu.get_cpu_capability())
    for repeat in range(2):
        for dtype in (torch.float32, torch.bfloat16):
            generator = torch.Generator().manual_seed(repeat)
            logits = torch.randn(SHAPE, generator=generator).to(dtype)
            ids = torch.randint(0, SHAPE[1], (SHAPE[0],), generator=generator)
            calls = steps(logits, ids)
            for call in calls.values():
                call()
            gc.collect()
            gc.freeze()
            times = time_calls(calls, lambda _: None, calls=5, repeats=9, max_pair_s=10.0)
            gc.unfreeze()
            parts = [f"{name} {value['median_s'] * 1e3:.3f}" for name, value in times.items()]
            print(f"{str(dtype).removeprefix('torch.')}: {'; '.join(parts)}", flush=True)


if __name__ == "__main__":
    main()
