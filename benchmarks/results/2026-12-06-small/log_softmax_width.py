"""PyTorch's CPU log-softmax over an innermost class axis, against the same with the
class axis moved to the front (lsr.torch's namespace for narrow classes), per class
count: where the innermost kernel leaves its scalar path (NARROW_CLASSES).

Run: python benchmarks/results/2026-12-06-small/log_softmax_width.py
"""

import time

import torch


def best_microseconds(f, n=5000, repeats=5):
    for _ in range(300):
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
print("rows classes dtype innermost_us moved_us")
for rows in (256, 2048):
    for classes in (2, 4, 7, 8, 9, 12, 15, 16):
        for dtype in (torch.float32, torch.bfloat16):
            x = torch.randn(rows, classes, dtype=dtype)
            inner = best_microseconds(lambda x=x: torch.log_softmax(x, 1, dtype=torch.float32))
            moved = best_microseconds(
                lambda x=x: torch.movedim(
                    torch.log_softmax(torch.movedim(x, 1, 0), 0, dtype=torch.float32), 0, 1
                )
            )
            print(rows, classes, str(dtype).removeprefix("torch."), f"{inner:.2f}", f"{moved:.2f}")
