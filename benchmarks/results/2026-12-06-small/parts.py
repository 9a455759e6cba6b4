"""Where the time of one eager call goes at 256 x 10 float32 (forward + backward, one
process, best of 7 repeats of 5000 calls), beside F.cross_entropy(label_smoothing=0.1):

- a custom autograd Function that does nothing (autograd's own cost of any Function);
- lsr's core pass alone (``_core.log_softmax_loss_and_grad``: the loss and gradient of
  the small path, no autograd), and the same dozen tensor operations written inline;
- the validation of a repeated call (``_checks.check_smooth_ce``, known options);
- the small path's Function with the checked spec (``SmoothCESmall``), and the whole
  ``lsr.torch.smooth_ce`` call.

Run: PYTHONPATH=. python benchmarks/results/2026-12-06-small/parts.py
"""

import inspect
import time

import torch
import torch.nn.functional as F

import lsr.torch
from lsr import _core
from lsr._checks import check_smooth_ce
from lsr.torch._autograd import SmoothCESmall
from lsr.torch._namespace import xp

torch.manual_seed(0)
logits = torch.randn(256, 10, requires_grad=True)
labels = torch.randint(0, 10, (256,))
plain = logits.detach()
OPTIONS = dict(
    smoothing=0.1, prior="uniform", axis=1, ignore_index=-100, weight=None,
    reduction="mean", kl=False, z_loss=0.0, softcap=None, confidence_penalty=0.0,
    return_aux=False, causal_shift=False, namespace=xp,
)  # fmt: skip
_, checked_labels, spec = check_smooth_ce(logits, labels, **OPTIONS)


def best_microseconds(f, n=5000, repeats=7):
    for _ in range(500):
        f()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            f()
        times.append((time.perf_counter() - start) / n * 1e6)
    return min(times)


class Nothing(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.grad = torch.empty_like(x)
        return torch.zeros(())

    @staticmethod
    def backward(ctx, grad):
        return ctx.grad


def inline(x, y, eps=0.1):
    """The small path's operations for this case, by hand (no checks, no options)."""
    rows, classes = x.shape
    log_p = torch.log_softmax(x, 1)
    target = torch.gather(log_p, 1, y[:, None])
    total = (1 - eps) * float(target.sum()) + eps / classes * float(log_p.sum())
    grad = log_p.exp_()
    grad.mul_(1.0 / rows).sub_(eps / classes / rows)
    grad.scatter_add_(1, y[:, None], torch.full((rows, 1), -(1 - eps) / rows))
    return torch.scalar_tensor(-total / rows), grad


print(
    f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
    f"CPU capability {torch.backends.cpu.get_cpu_capability()}"
)
# (SmoothCESmall takes a fourth argument, the loss's dtype, since e2d1310: None.)
SMALL_EXTRA = (None,) if "loss_dtype" in inspect.signature(SmoothCESmall.forward).parameters else ()
rows = [
    ("F.cross_entropy(label_smoothing=0.1), forward + backward",
     lambda: F.cross_entropy(logits, labels, label_smoothing=0.1).backward()),
    ("a Function that does nothing, forward + backward",
     lambda: Nothing.apply(logits).backward()),
    ("the core's pass alone", lambda: _core.log_softmax_loss_and_grad(
        plain, checked_labels, spec, xp=xp)),
    ("its operations inline", lambda: inline(plain, labels)),
    ("validation of a repeated call", lambda: check_smooth_ce(logits, labels, **OPTIONS)),
    ("SmoothCESmall, forward + backward",
     lambda: SmoothCESmall.apply(logits, checked_labels, spec, *SMALL_EXTRA).backward()),
    ("lsr.torch.smooth_ce, forward + backward",
     lambda: lsr.torch.smooth_ce(logits, labels).backward()),
    ("F.cross_entropy(label_smoothing=0.1) again",
     lambda: F.cross_entropy(logits, labels, label_smoothing=0.1).backward()),
]  # fmt: skip
for name, f in rows:
    print(f"{best_microseconds(f):7.1f} us  {name}")
