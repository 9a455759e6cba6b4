"""Where ``torch.compile``'s time goes at 256 x 10 float32 (CPU): lsr's
``smooth_ce(smoothing=0.1)`` and ``F.cross_entropy(label_smoothing=0.1)``, each
compiled, forward + backward (``torch.autograd.grad``) and the loss alone.

The guards each compiled function tests on every call are counted with
``torch._dynamo.explain`` (``out_guards``), and both are timed twice: as compiled, and
under ``torch.compiler.set_stance(skip_guard_eval_unsafe=True)``, which skips most of
those tests (unsafe for real use: a changed input would not recompile; here the inputs
never change). (``benchmarks/results/2026-12-07-compile-guards/`` counts the guard
tree's lines by module instead.) Batches of 100 calls, the four steps taking turns in
``round_order``; medians in microseconds, and lsr's over the rival's. The two stances
are timed one after the other (not in turns), so only the ratios within a stance compare.

Run from a checkout's root:
``PYTHONPATH=. python benchmarks/results/2026-12-07-guard-time/guard_time.py``
"""

import statistics
import subprocess
import time

import torch
import torch.nn.functional as F

import lsr.torch
from benchmarks.common import round_order

N, K, EPS = 256, 10, 0.1


def ours(z, t):
    return lsr.torch.smooth_ce(z, t, smoothing=EPS)


def rival(z, t):
    return F.cross_entropy(z, t, label_smoothing=EPS)


def guards(fn, logits, ids):
    torch._dynamo.reset()
    return len(torch._dynamo.explain(fn)(logits, ids).out_guards)


def timed(steps, rounds=16, calls=100):
    times = {name: [] for name in steps}
    for number in range(rounds):
        for name in round_order(list(steps), number):
            step = steps[name]
            step()
            start = time.perf_counter()
            for _ in range(calls):
                step()
            times[name].append((time.perf_counter() - start) / calls * 1e6)
    return {name: statistics.median(values) for name, values in times.items()}


def main():
    torch.manual_seed(0)
    logits = torch.randn(N, K)
    ids = torch.randint(0, K, (N,))
    leaf = logits.clone().requires_grad_(True)
    revision = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    print(f"torch {torch.__version__}, commit {revision}, {N} x {K} float32, CPU")
    print(f"guards: lsr {guards(ours, leaf, ids)}, F.cross_entropy {guards(rival, leaf, ids)}")
    torch._dynamo.reset()
    compiled = {"lsr": torch.compile(ours), "F": torch.compile(rival)}
    steps = {}
    for name, fn in compiled.items():
        steps[f"{name} f+b"] = lambda fn=fn: torch.autograd.grad(fn(leaf, ids), leaf)
        steps[f"{name} loss"] = lambda fn=fn: fn(logits, ids)
    for step in steps.values():
        step()
        step()
    for stance in ("as compiled", "guards skipped"):
        if stance == "as compiled":
            medians = timed(steps)
        else:
            with torch.compiler.set_stance(skip_guard_eval_unsafe=True):
                medians = timed(steps)
        shown = ", ".join(f"{name} {value:.1f}" for name, value in medians.items())
        ratios = [medians[f"lsr {part}"] / medians[f"F {part}"] for part in ("f+b", "loss")]
        print(f"{stance}: {shown}; lsr / F: f+b {ratios[0]:.2f}, loss {ratios[1]:.2f}")


if __name__ == "__main__":
    main()
