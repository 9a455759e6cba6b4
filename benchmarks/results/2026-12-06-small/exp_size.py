"""exp in place after a log-softmax on the CPU: one exp_ against exp2(x * log2 e) (two
in-place operations), by the number of values: where lsr.torch's namespace switches
(_ONE_OP_EXP).

Run: python benchmarks/results/2026-12-06-small/exp_size.py
"""

import time

import torch

print(
    f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
    f"CPU capability {torch.backends.cpu.get_cpu_capability()}"
)
print("values exp__us mul_exp2__us")
clock = time.perf_counter_ns
for values in (2560, 8192, 16384, 32768, 65536, 1 << 20):
    x = torch.randn(values // 10, 10)
    spent = [0, 0]

    def step(x=x, spent=spent):
        log_p = torch.log_softmax(x, 1)
        start = clock()
        log_p.exp_()
        middle = clock()
        log_p = torch.log_softmax(x, 1)
        restart = clock()
        log_p.mul_(1.4426950408889634).exp2_()
        spent[0] += middle - start
        spent[1] += clock() - restart

    calls = max(200, 20_000_000 // values)
    for _ in range(calls // 10):
        step()
    spent[:] = [0, 0]
    for _ in range(calls):
        step()
    print(values, f"{spent[0] / calls / 1000:.2f}", f"{spent[1] / calls / 1000:.2f}")
