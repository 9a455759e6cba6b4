"""Where the time of a small eager PyTorch call goes (256 x 10 float32, CPU): lsr's
``smooth_ce(smoothing=0.1)``, ``F.cross_entropy(label_smoothing=0.1)``, and lsr's own
steps written by hand without its Python (``floor``: the class axis moved for the
log-softmax as lsr's namespace does, the gather and the two sums read as Python floats,
the loss a new 0-d tensor; with the gradient, ``exp_``, its scaling, the background
subtracted and the on-target part scattered, in a custom autograd Function), the loss
alone and forward + backward (``torch.autograd.grad``). Also single steps, each alone
in a loop, to compare with their cost inside the sequence.

Timed two ways: ``warm``, batches of 200 calls of one step, the steps taking turns in
``round_order`` (as the benchmark harness does); ``cold``, one call of each step in
turn, so that each runs after the others, as a loss does inside a training step.
Medians in microseconds, and lsr's and the floor's over the rival's.

Run from a checkout's root:
``PYTHONPATH=. python benchmarks/results/2026-12-07-small-calls/floor.py``
"""

import statistics
import subprocess
import time

import torch
import torch.nn.functional as F

import lsr.torch
from benchmarks.common import round_order

N, K, EPS = 256, 10, 0.1


def steps(logits, ids):
    leaf = logits.detach().requires_grad_(True)

    def floor_loss(x, with_grad):
        moved = torch.log_softmax(torch.movedim(x, 1, 0), 0)
        log_p = torch.movedim(moved, 0, 1)
        index = torch.unsqueeze(ids, 1)
        total = float(torch.sum(log_p)) * EPS / K
        target = float(torch.sum(torch.gather(log_p, 1, index))) * (1 - EPS)
        loss = torch.scalar_tensor(-(total + target) / N)
        if not with_grad:
            return loss, None
        grad = torch.empty_like(x)
        torch.exp(log_p, out=grad)
        grad.mul_(1 / N).sub_(EPS / K / N)
        grad.scatter_add_(1, index, torch.full(index.shape, -(1 - EPS) / N))
        return loss, grad

    class Floor(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            loss, ctx.grad = floor_loss(x, True)
            return loss

        @staticmethod
        def backward(ctx, cotangent):
            grad, ctx.grad = ctx.grad, None
            return grad if cotangent.item() == 1.0 else grad * cotangent

    def forward(fn):
        def step():
            with torch.no_grad():
                return fn(logits)

        return step

    def forward_backward(fn):
        def step():
            return torch.autograd.grad(fn(leaf), leaf)

        return step

    def ours(x):
        return lsr.torch.smooth_ce(x, ids, smoothing=EPS)

    def rival(x):
        return F.cross_entropy(x, ids, label_smoothing=EPS)

    moved = torch.log_softmax(torch.movedim(logits, 1, 0), 0)
    return {
        "loss alone: lsr": forward(ours),
        "loss alone: rival": forward(rival),
        "loss alone: floor": forward(lambda x: floor_loss(x, False)[0]),
        "forward + backward: lsr": forward_backward(ours),
        "forward + backward: rival": forward_backward(rival),
        "forward + backward: floor": forward_backward(Floor.apply),
        "step: log_softmax (moved)": lambda: torch.log_softmax(torch.movedim(logits, 1, 0), 0),
        "step: sum": lambda: torch.sum(moved),
        "step: exp_ of a copy": lambda: moved.clone().exp_(),
        "step: clone": lambda: moved.clone(),
    }


def timed(calls, *, batch, rounds):
    times = {name: [] for name in calls}
    order = list(calls.items())
    for index in range(rounds):
        for name, call in round_order(order, index):
            call()
            start = time.perf_counter_ns()
            for _ in range(batch):
                call()
            times[name].append((time.perf_counter_ns() - start) / batch / 1000)
    return {name: statistics.median(values) for name, values in times.items()}


def main():
    revision = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    capability = torch.backends.cpu.get_cpu_capability()
    print(
        "commit",
        revision,
        "torch",
        torch.__version__,
        capability,
        torch.get_num_threads(),
        "threads",
    )
    generator = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(N, K, generator=generator)
    ids = torch.randint(0, K, (N,), generator=generator)
    calls = steps(logits, ids)
    for call in calls.values():
        call()
    for label, batch, rounds in (("warm", 200, 20), ("cold", 1, 4000)):
        us = timed(calls, batch=batch, rounds=rounds)
        for part in ("loss alone", "forward + backward"):
            rival = us[f"{part}: rival"]
            print(
                f"{label} {part}: lsr {us[f'{part}: lsr']:.1f} "
                f"({us[f'{part}: lsr'] / rival:.2f}), rival {rival:.1f}, floor "
                f"{us[f'{part}: floor']:.1f} ({us[f'{part}: floor'] / rival:.2f})"
            )
        print(
            f"{label} single steps: "
            + "; ".join(
                f"{name[6:]} {value:.1f}" for name, value in us.items() if name.startswith("step")
            )
        )


if __name__ == "__main__":
    main()
