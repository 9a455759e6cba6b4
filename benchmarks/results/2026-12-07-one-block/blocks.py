"""Eager PyTorch (CPU), float32: ``lsr.torch.smooth_ce(smoothing=0.1)`` as it is
(``lsr``: the log-softmax form block by block of rows, ``row_blocks``), the same with
every row in one block (``one block``: ``BLOCK_ELEMENTS`` and ``ROW_BLOCK_ELEMENTS``
raised for the call), and ``F.cross_entropy(label_smoothing=0.1)``, timed by the
harness's ``time_methods`` (9 rounds, ``round_order``), milliseconds; the loss alone
(``fw``) or forward + backward (``fb``, ``torch.autograd.grad``). A lead, not a change
(blocks.txt, 2 cores with AVX-512 and a 480 MiB L3 shared with the host). In a first run
one block was the faster for the loss alone up to about 4M logits (4096 x 1000 1.08 of
the rival's time against 1.28) and level at 8M, and for forward + backward up to 8M
(8192 x 1000 0.42 against 0.59), and the slower from about 16M (the loss alone 1.01
against 0.40). A second run an hour later found the two within 9% of each other, either
way, up to 8M (4096 x 1000: 0.611 against 0.628 for the loss alone, 0.339 against 0.360
forward + backward), and again the slower from 16M; the rival's loss alone took 1.95 and
then 2.88 ms at 4096 x 1000. So the gain is not settled. In bfloat16 one block needs a
float32 copy of every row (two logits-sized buffers): not measured here.

Run from a checkout's root:
``PYTHONPATH=. python benchmarks/results/2026-12-07-one-block/blocks.py fw`` (or ``fb``)
"""

import gc
import sys

import torch
import torch.nn.functional as F

import lsr.torch
from benchmarks.common import Loss, Method, time_methods
from lsr.torch import _autograd

SHAPES = [(2048, 1000), (4096, 1000), (8192, 1000), (4096, 4096), (16384, 1000)]


def with_blocks(elements, fn):
    def call(*arguments):
        old = (_autograd.BLOCK_ELEMENTS, _autograd.ROW_BLOCK_ELEMENTS)
        _autograd.BLOCK_ELEMENTS = _autograd.ROW_BLOCK_ELEMENTS = elements
        try:
            return fn(*arguments)
        finally:
            _autograd.BLOCK_ELEMENTS, _autograd.ROW_BLOCK_ELEMENTS = old

    return call


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "fw"
    for shape in SHAPES:
        generator = torch.Generator().manual_seed(0)
        logits = 3 * torch.randn(shape, generator=generator)
        ids = torch.randint(0, shape[1], (shape[0],), generator=generator)
        leaf = logits.detach().requires_grad_(True)

        def ours(x, ids=ids):
            return lsr.torch.smooth_ce(x, ids, smoothing=0.1)

        def rival(x, ids=ids):
            return F.cross_entropy(x, ids, label_smoothing=0.1)

        arms = {"lsr": ours, "one block": with_blocks(1 << 62, ours), "rival": rival}

        def step(fn, logits=logits, leaf=leaf):
            if mode == "fb":
                return lambda: torch.autograd.grad(fn(leaf), leaf)

            def forward():
                with torch.no_grad():
                    return fn(logits)

            return forward

        methods = [Method(Loss(name, "x", fn, "eager"), step(fn)) for name, fn in arms.items()]
        gc.collect()
        gc.freeze()
        times = time_methods(methods, lambda _: None, repeats=9, min_repeat_s=0.1, max_total_s=12.0)
        gc.unfreeze()
        ms = {name: times[name]["median_s"] * 1e3 for name in arms}
        print(
            mode,
            "x".join(map(str, shape)),
            "float32",
            " ".join(f"{name} {value:.3f}" for name, value in ms.items()),
            f"lsr/rival {ms['lsr'] / ms['rival']:.3f}",
            f"one/rival {ms['one block'] / ms['rival']:.3f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
