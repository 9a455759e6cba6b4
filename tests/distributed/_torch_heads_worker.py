"""What each rank of test_torch_vocab_heads.py runs: several output heads, one group.

Each head has its own vocabulary, split over the ranks with slice sizes that differ
between heads (and, for a rank, sometimes not: the case a cache keyed on the local size
gets wrong). The heads are called in turn, twice, without ``shard_sizes``; every loss
and gradient is saved for the test process to compare with a single-process reference.

Run as ``python -m tests.distributed._torch_heads_worker SCENARIO RANK WORLD_SIZE
INIT_FILE OUT_DIR``.
"""

from __future__ import annotations

import datetime
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from lsr.torch import vocab_parallel_smooth_ce

IGNORE = -100
SMOOTHING = 0.1
# Scenario -> the class slice sizes of each head, one per rank.
SCENARIOS = {
    # Rank 0 holds 4 classes of both heads, rank 1 a different number: a size cache
    # would let rank 0 skip the all-gather that rank 1 enters (a deadlock).
    "two-heads": [(4, 6), (4, 9)],
    # The third head's local sizes (4 and 4) were each seen before, with other partners:
    # a size cache would give both ranks a K of 10 instead of 8 (a silently wrong loss).
    "three-heads": [(4, 6), (6, 4), (4, 4)],
    # The same on three ranks.
    "three-heads-three-ranks": [(2, 3, 4), (3, 2, 2), (2, 2, 3)],
}
REPEATS = 2


def head_inputs(sizes: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The whole (unsplit) float64 logits (5 positions) and labels of one head."""
    rng = np.random.default_rng(seed)
    num_classes = sum(sizes)
    logits = rng.normal(scale=3.0, size=(5, num_classes))
    labels = rng.integers(0, num_classes, size=5)
    labels[1] = IGNORE
    return logits, labels


def class_slice(sizes: tuple[int, ...], rank: int) -> slice:
    start = sum(sizes[:rank])
    return slice(start, start + sizes[rank])


def main(scenario: str, rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    # A mismatched collective fails within seconds instead of the default 30 minutes.
    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=20),
    )
    results = []
    for _ in range(REPEATS):
        for head, sizes in enumerate(SCENARIOS[scenario]):
            logits, labels = head_inputs(sizes, seed=head)
            shard = torch.from_numpy(logits[:, class_slice(sizes, rank)].copy())
            shard.requires_grad_(True)
            loss = vocab_parallel_smooth_ce(shard, torch.from_numpy(labels), smoothing=SMOOTHING)
            loss.backward()
            results.append((head, loss.detach(), shard.grad))
    torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
    # The results are saved. Leave without the interpreter's finalization, where a gloo
    # worker thread still releasing a collective launched in backward can abort the
    # exit (pytorch/pytorch#190489; see docs/examples/data_parallel.py).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
