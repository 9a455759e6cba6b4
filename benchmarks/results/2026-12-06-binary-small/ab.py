"""In-process A/B: eager PyTorch's paths for small inputs of the binary loss, on the CPU.

Three ways through ``lsr.torch.smooth_bce`` (smoothing 0.1 towards 1/2, mean), and the
rival, ``F.binary_cross_entropy_with_logits`` on targets smoothed by hand:

* ``kernel``: the default, PyTorch's own kernel on the core's smoothed targets
  (``_core.kernel_form_applies``), one C++ call differentiated by PyTorch;
* ``small``: ``SmoothBCESmall`` (the kernel form refused), the gradient made in the
  forward pass;
* ``eager``: the eager Function (``SMALL_ELEMENTS = 0``), as every input took before
  2026-12-06;

forward + backward, and the loss alone under ``torch.no_grad()``. Targets: 10% ones.
Medians of 7 rounds, the four interleaved within each round (the harness's
``time_calls``).

Run from a checkout's root:
``PYTHONPATH=. python benchmarks/results/2026-12-06-binary-small/ab.py``
"""

import torch
import torch.nn.functional as F

import lsr.torch
from benchmarks.common import time_calls
from lsr import _core
from lsr.torch import _autograd, _binary

APPLIES = _core.kernel_form_applies
# (The binary loss's own bound since 2026-12-06, night: the softmax loss's before.)
BOUND = (_binary, "SMALL_BINARY_ELEMENTS")
if not hasattr(_binary, "SMALL_BINARY_ELEMENTS"):
    BOUND = (_autograd, "SMALL_ELEMENTS")
SMALL = getattr(*BOUND)


def configured(call, *, kernel, small):
    def run():
        _core.kernel_form_applies = APPLIES if kernel else (lambda spec: False)
        setattr(*BOUND, SMALL if small else 0)
        try:
            call()
        finally:
            _core.kernel_form_applies = APPLIES
            setattr(*BOUND, SMALL)

    return run


def main():
    assert _binary._core is _core  # (the patched name is the one the adapter reads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for shape in [(8, 4), (256, 10), (2048, 32), (4096, 16)]:
        for dtype in (torch.float32, torch.bfloat16):
            logits = torch.randn(*shape, dtype=dtype).requires_grad_()
            target = (torch.rand(shape) < 0.1).to(dtype)
            calls = max(20, 200_000 // (logits.numel() + 2000))
            for mode in ("forward+backward", "forward"):

                def ours(logits=logits, target=target, mode=mode):
                    if mode == "forward":
                        with torch.no_grad():
                            lsr.torch.smooth_bce(logits, target, smoothing=0.1)
                    else:
                        lsr.torch.smooth_bce(logits, target, smoothing=0.1).backward()

                def rival(logits=logits, target=target, mode=mode):
                    if mode == "forward":
                        with torch.no_grad():
                            F.binary_cross_entropy_with_logits(logits, 0.9 * target + 0.05)
                    else:
                        F.binary_cross_entropy_with_logits(logits, 0.9 * target + 0.05).backward()

                methods = {
                    "kernel": configured(ours, kernel=True, small=True),
                    "small": configured(ours, kernel=False, small=True),
                    "eager": configured(ours, kernel=False, small=False),
                    "rival": rival,
                }
                for call in methods.values():
                    for _ in range(20):
                        call()
                timed = time_calls(
                    methods, lambda result: None, calls=calls, repeats=7, max_pair_s=60.0
                )
                us = {name: timed[name]["median_s"] * 1e6 for name in methods}
                print(
                    f"{'x'.join(map(str, shape)):>9} {str(dtype)[6:]:>8} {mode:>16}: "
                    + ", ".join(f"{name} {value:.0f}" for name, value in us.items())
                    + " us; lsr / rival: "
                    + ", ".join(
                        f"{name} {us[name] / us['rival']:.2f}"
                        for name in ("eager", "small", "kernel")
                    ),
                    flush=True,
                )


if __name__ == "__main__":
    main()
