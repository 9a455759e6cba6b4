"""In-process A/B: eager PyTorch's path for small inputs with ignored targets.

Before: with targets equal to ``ignore_index`` and a gradient, calls took the blocked
pass. After: they take the small path (``SmoothCESmall``: one fused log-softmax), with
the blocked pass as fallback where the loss or the gradient is not finite. "before" is
the same code with ``log_softmax_applies`` patched to refuse left-out positions, as it
did. Forward + backward, mean reduction, smoothing 0.1, 10% of the targets -100; the
rival is ``F.cross_entropy(label_smoothing=0.1)``. Medians of 7 repeats of 100 calls,
the three methods interleaved.

Run: ``python benchmarks/results/2026-12-05-torch-ignore-ab/ab.py``
"""

import time

import torch
import torch.nn.functional as F

import lsr.torch
from lsr import _core

APPLIES = _core.log_softmax_applies


def refuse_left_out(spec):
    return APPLIES(spec) and not _core.leaves_positions_out(spec)


def median_us(call, calls=100, repeats=7):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            call()
        times.append((time.perf_counter() - start) / calls * 1e6)
    return sorted(times)[repeats // 2]


def main():
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for shape in [(256, 10), (2, 21, 2, 2), (2, 21, 16, 16), (64, 1000)]:
        for dtype in (torch.float32, torch.bfloat16):
            logits = torch.randn(*shape, dtype=dtype).requires_grad_()
            target = torch.randint(0, shape[1], (shape[0], *shape[2:]))
            target[torch.rand(target.shape) < 0.1] = -100
            target.view(-1)[0] = -100

            def after(logits=logits, target=target):
                lsr.torch.smooth_ce(logits, target, smoothing=0.1).backward()

            def before(after=after):
                _core.log_softmax_applies = refuse_left_out
                try:
                    after()
                finally:
                    _core.log_softmax_applies = APPLIES

            def rival(logits=logits, target=target):
                F.cross_entropy(logits, target, label_smoothing=0.1).backward()

            methods = {"after": after, "before": before, "rival": rival}
            for call in methods.values():
                for _ in range(30):
                    call()
            times = {name: [] for name in methods}
            for _ in range(7):
                for name, call in methods.items():
                    times[name].append(median_us(call, repeats=1))
            us = {name: sorted(values)[3] for name, values in times.items()}
            print(
                f"{'x'.join(map(str, shape)):>12} {str(dtype)[6:]:>8}: "
                f"before {us['before']:.0f} us, after {us['after']:.0f} us, "
                f"rival {us['rival']:.0f} us; lsr / rival {us['before'] / us['rival']:.2f} "
                f"-> {us['after'] / us['rival']:.2f}"
            )


if __name__ == "__main__":
    main()
