"""lsr.torch.smooth_ce forward + backward on 10 and 12 classes, by the number of rows:
the small path (SmoothCESmall) against the blocked pass (SmoothCEFused), each forced
by replacing the rule that chooses (lsr.torch._functional.is_small).

Run: python benchmarks/results/2026-12-06-small/small_path_rows.py
"""

import time

import torch

import lsr.torch
import lsr.torch._functional as functional


def best_microseconds(f, n=400, repeats=5):
    for _ in range(50):
        f()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            f()
        times.append((time.perf_counter() - start) / n * 1e6)
    return min(times)


print(
    f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
    f"CPU capability {torch.backends.cpu.get_cpu_capability()}"
)
print("classes rows small_us blocked_us")
for classes in (10, 12):
    for rows in (2048, 4096, 6000):
        logits = torch.randn(rows, classes, requires_grad=True)
        labels = torch.randint(0, classes, (rows,))

        def step(logits=logits, labels=labels):
            lsr.torch.smooth_ce(logits, labels).backward()

        functional.is_small = lambda logits, axis: True
        small = best_microseconds(step)
        functional.is_small = lambda logits, axis: False
        blocked = best_microseconds(step)
        print(classes, rows, f"{small:.1f}", f"{blocked:.1f}")
