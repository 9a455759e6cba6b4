# Run with: torchrun --nproc_per_node=2 docs/examples/vocab_parallel.py
import torch
import torch.distributed as dist

import lsr.torch

dist.init_process_group("gloo")  # "nccl" on GPUs
rank, world_size = dist.get_rank(), dist.get_world_size()

vocab, tokens = 1000, 64
torch.manual_seed(0)  # the same full logits on every rank, only to compare below
full_logits = torch.randn(tokens, vocab, dtype=torch.float64)
labels = torch.randint(0, vocab, (tokens,))
labels[:8] = -100  # padding

# This rank's contiguous slice of the vocabulary, as a vocab-parallel output layer
# produces it (slices may differ in size: 1000 = 333 + 667 here).
bounds = [0, 333, vocab] if world_size == 2 else torch.linspace(0, vocab, world_size + 1).long()
start, stop = int(bounds[rank]), int(bounds[rank + 1])
shard = full_logits[:, start:stop].clone().requires_grad_()

loss = lsr.torch.vocab_parallel_smooth_ce(shard, labels, smoothing=0.1, prior="others")
loss.backward()  # shard.grad is this rank's slice of the full gradient

full = full_logits.clone().requires_grad_()
single = lsr.torch.smooth_ce(full, labels, smoothing=0.1, prior="others")
single.backward()
same_grad = torch.allclose(shard.grad, full.grad[:, start:stop], rtol=1e-12, atol=1e-15)
print(
    f"rank {rank}: loss {loss.item():.12f}, one process {single.item():.12f}, "
    f"gradient slice equal: {same_grad}"
)
dist.destroy_process_group()
