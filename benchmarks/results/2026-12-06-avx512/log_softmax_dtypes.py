"""PyTorch's CPU ``log_softmax`` of bfloat16 logits into float32 (what lsr computes for
half precision) against bfloat16 into bfloat16 (what ``F.cross_entropy`` computes) and
float32 into float32, along the class axis, with and without an ``out`` tensor, and
the bfloat16 to float32 copy alone. Microseconds per call, medians of 3 rounds of the
variants in turn (about 0.2 s each).

Run: ``python benchmarks/results/2026-12-06-avx512/log_softmax_dtypes.py``
"""

import platform
import statistics
import time

import torch


def per_call_us(fn, budget_s=0.2):
    for _ in range(3):
        fn()
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed > budget_s and calls >= 3:
            return elapsed / calls * 1e6


def variants(x, x32, out, axis):
    return {
        "bf16->f32": lambda: torch.log_softmax(x, axis, dtype=torch.float32),
        "bf16->f32 out": lambda: torch.log_softmax(x, axis, dtype=torch.float32, out=out),
        "bf16->bf16": lambda: torch.log_softmax(x, axis),
        "f32->f32": lambda: torch.log_softmax(x32, axis),
        "f32->f32 out": lambda: torch.log_softmax(x32, axis, out=out),
        "copy bf16->f32": lambda: out.copy_(x),
    }


def main():
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, {platform.processor()}"
    )
    for shape in [(256, 1000), (1024, 1000), (4096, 1000), (2, 21, 256, 256)]:
        x = torch.randn(*shape, dtype=torch.bfloat16)
        x32, out = x.float(), torch.empty(*shape)
        calls = variants(x, x32, out, 1)
        times = {name: [] for name in calls}
        for _ in range(3):
            for name, fn in calls.items():
                times[name].append(per_call_us(fn))
        row = ", ".join(f"{name} {statistics.median(t):.0f}" for name, t in times.items())
        print(f"{'x'.join(map(str, shape))}: {row}", flush=True)


if __name__ == "__main__":
    main()
