"""The loss alone under torch.no_grad(): lsr's log-softmax path ("lsm") and its blocked
pass ("blocked"), each forced by replacing the function the adapter calls, and
F.cross_entropy ("rival"), taking turns twice in one process (best of 5, microseconds).
Run from the repository's root."""

import torch
import torch.nn.functional as F
from no_grad import best  # (the script's own folder is on the path)

import lsr.torch as lt
from lsr.torch import _autograd, _functional

torch.set_num_threads(2)
CASES = [
    ((2, 21, 128, 128), torch.float32, 0.05, 50),
    ((2, 21, 128, 128), torch.bfloat16, 0.05, 50),
    ((2, 21, 128, 128), torch.float32, 0.0, 50),
    ((4096, 1000), torch.float32, 0, 20),
    ((4096, 1000), torch.bfloat16, 0, 20),
    ((512, 32000), torch.bfloat16, 0, 5),
    ((512, 32000), torch.float32, 0, 5),
]


def blocked(logits, labels, spec):
    static = spec.static()
    return _autograd._blocked_loss_and_grad(
        logits, labels, None, spec.smoothing, spec.prior, static, False
    )[0]


def main():
    lsm = _autograd.log_softmax_loss
    for shape, dtype, ignored, n in CASES:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(shape, generator=generator).to(dtype)
        positions = shape[:1] + shape[2:]
        y = torch.randint(0, shape[1], positions, generator=generator)
        if ignored:
            y[torch.rand(positions, generator=generator) < ignored] = -100
        results = {}
        with torch.no_grad():
            for _ in range(2):
                for name, path in (("lsm", lsm), ("blocked", blocked)):
                    _functional.log_softmax_loss = path
                    timed = best(lambda: lt.smooth_ce(x, y, smoothing=0.1), n)  # noqa: B023
                    results.setdefault(name, []).append(timed)
                rival = best(lambda: F.cross_entropy(x, y, label_smoothing=0.1), n)  # noqa: B023
                results.setdefault("rival", []).append(rival)
        _functional.log_softmax_loss = lsm
        print(shape, dtype, ignored, {k: [round(v) for v in vs] for k, vs in results.items()})


main()
