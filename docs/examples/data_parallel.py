# Run with: torchrun --nproc_per_node=2 docs/examples/data_parallel.py
import os
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F

import lsr.torch

dist.init_process_group("gloo")
rank, world_size = dist.get_rank(), dist.get_world_size()

torch.manual_seed(0)  # same model and global batch on every rank, only to compare below
model = torch.nn.Linear(16, 10, dtype=torch.float64)
features, labels = torch.randn(64, 16, dtype=torch.float64), torch.randint(0, 10, (64,))
labels[:30] = -100  # rank 0's half is mostly padding: per-rank means would overweight it

ddp = torch.nn.parallel.DistributedDataParallel(model)
mine = slice(rank * 32, (rank + 1) * 32)
loss = lsr.torch.data_parallel_smooth_ce(ddp(features[mine]), labels[mine], smoothing=0.1)
(loss * world_size).backward()  # DDP averages gradients over ranks: undo that

reference = torch.nn.Linear(16, 10, dtype=torch.float64)
reference.load_state_dict(model.state_dict())
single = F.cross_entropy(reference(features), labels, ignore_index=-100, label_smoothing=0.1)
single.backward()
print(
    f"rank {rank}: loss {loss.item():.12f}, one process {single.item():.12f}, "
    f"weight gradient equal: {torch.allclose(model.weight.grad, reference.weight.grad)}"
)
dist.destroy_process_group()
# With PyTorch 2.13, gloo's worker threads outlive destroy_process_group once DDP has
# used the group, and one still releasing a collective launched in backward aborts the
# interpreter's exit now and then (pytorch/pytorch#190489): leave without that teardown,
# as the very last line (os._exit runs no atexit handler and flushes nothing else).
sys.stdout.flush()
os._exit(0)
