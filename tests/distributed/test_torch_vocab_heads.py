"""Several output heads of different vocabularies on one gloo group, without shard_sizes.

Every rank's slice sizes are gathered on each call; nothing kept from an earlier head
may decide a later head's K. Each scenario runs in a fresh group
(tests/distributed/_torch_heads_worker.py) and every loss and gradient slice is compared
with PyTorch's own ``F.cross_entropy(label_smoothing=...)`` on the whole logits.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.backends import assert_close
from tests.distributed import _torch_heads_worker as worker

REPO = Path(__file__).resolve().parents[2]


def _launch(scenario, world_size, out_dir):
    """Run the scenario on every rank of a fresh gloo group; return each rank's results.

    A rank stuck in a mismatched collective fails after the group's 20 s timeout; the
    processes are killed after 120 s whatever happens.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "tests.distributed._torch_heads_worker", scenario]
    processes = [
        subprocess.Popen(
            [*command, str(rank), str(world_size), str(out_dir / "rendezvous"), str(out_dir)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in range(world_size)
    ]
    outputs = []
    try:
        for process in processes:
            try:
                outputs.append(process.communicate(timeout=120)[0])
            except subprocess.TimeoutExpired:
                process.kill()
                outputs.append(process.communicate()[0] + "\n(killed after 120 s)")
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    failed = [
        f"rank {rank} exited with {p.returncode}:\n{out[-3000:]}"
        for rank, (p, out) in enumerate(zip(processes, outputs, strict=True))
        if p.returncode != 0
    ]
    assert not failed, "\n".join(failed)
    return [torch.load(out_dir / f"rank{rank}.pt") for rank in range(world_size)]


def _expected(sizes, head):
    """PyTorch's loss and gradient on the whole logits of one head, float64."""
    logits, labels = worker.head_inputs(sizes, seed=head)
    whole = torch.from_numpy(logits).requires_grad_(True)
    loss = F.cross_entropy(
        whole,
        torch.from_numpy(labels),
        ignore_index=worker.IGNORE,
        label_smoothing=worker.SMOOTHING,
    )
    loss.backward()
    return loss.detach(), whole.grad


@pytest.mark.parametrize("scenario", list(worker.SCENARIOS))
def test_heads_of_different_vocabularies_share_a_group(tmp_path, scenario):
    heads = worker.SCENARIOS[scenario]
    world_size = len(heads[0])
    results = _launch(scenario, world_size, tmp_path)
    for rank, result in enumerate(results):
        assert len(result) == worker.REPEATS * len(heads)
        for head, loss, grad in result:
            sizes = heads[head]
            expected_loss, expected_grad = _expected(sizes, head)
            assert_close(loss, expected_loss, torch.float64)
            assert grad.shape == (5, sizes[rank])
            assert_close(grad, expected_grad[:, worker.class_slice(sizes, rank)], torch.float64)
