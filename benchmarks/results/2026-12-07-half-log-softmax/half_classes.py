"""The loss alone of half-precision logits (no gradient) on the CPU, eager: the
log-softmax form (``log_softmax_loss``, the route's path) against the blocked pass
(``SmoothCEFused`` without a gradient, reached by patching ``takes_log_softmax_loss``
to say no, which also sends the call through the full path's checks, some tens of
microseconds), each ÷ ``F.cross_entropy(label_smoothing=0.1)``. Medians of 9 rounds,
the three calls interleaved (the harness's ``time_calls``).

Until d982d1e half-precision logits over 8192 classes took the blocked pass. The
output, half_classes.txt, was made on cf1b73b (both paths forced by the patch, so the
change that followed, which only chooses between them, does not enter). Run from a
checkout's root:
``PYTHONPATH=. python benchmarks/results/2026-12-07-half-log-softmax/half_classes.py``
"""

import gc
import subprocess

import torch
import torch.nn.functional as F

import lsr.torch
from benchmarks.common import time_calls
from lsr.torch import _functional

SHAPES = [(64, 10000), (256, 10000), (512, 32000), (128, 32000), (32, 128000), (2048, 4000)]


def on_path(log_softmax_form, logits, ids):
    def run():
        original = _functional.takes_log_softmax_loss
        _functional.takes_log_softmax_loss = lambda *_: log_softmax_form
        try:
            return lsr.torch.smooth_ce(logits, ids, smoothing=0.1)
        finally:
            _functional.takes_log_softmax_loss = original

    return run


def main():
    revision = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    capability = torch.backends.cpu.get_cpu_capability()
    threads = torch.get_num_threads()
    print("commit", revision, "torch", torch.__version__, capability, threads, "threads")
    for shape in SHAPES:
        for dtype in (torch.bfloat16, torch.float16):
            generator = torch.Generator().manual_seed(0)
            logits = (3 * torch.randn(shape, generator=generator)).to(dtype)
            ids = torch.randint(0, shape[1], (shape[0],), generator=generator)
            calls = {
                "rival": lambda x=logits, y=ids: F.cross_entropy(x, y, label_smoothing=0.1),
                "blocked": on_path(False, logits, ids),
                "log_softmax": on_path(True, logits, ids),
            }
            for step in calls.values():
                step()
            gc.collect()
            gc.freeze()
            times = time_calls(calls, lambda _: None, calls=10, repeats=9, max_pair_s=6.0)
            gc.unfreeze()
            rival = times["rival"]["median_s"]
            blocked = times["blocked"]["median_s"] / rival
            form = times["log_softmax"]["median_s"] / rival
            name = "x".join(map(str, shape))
            print(
                f"{name} {str(dtype).removeprefix('torch.')}: rival {rival * 1e6:.0f} us, "
                f"blocked pass {blocked:.3f}, log-softmax form {form:.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
