"""One block of ``lsr.torch.linear_smooth_ce``'s loop, timed per row, row-major logits
against column-major, at the rows 16 Mi logits make and at multiples of 128.

A block is: the logits ``hidden @ projection.T`` written into a block array (row-major,
as before 2026-12-06, or column-major, as the CPU's ``matmul_out`` now gives), the core's
loss and gradient in place (``_core.loss_and_grad``), then the two products of the
backward pass, ``d projection += grad.T @ hidden`` and ``d hidden = grad @ projection``.
The product of the logits alone is timed too. Medians of 5 calls, the layouts
alternating; float32, smoothing 0.1, 2 threads.

Run from a checkout's root: ``PYTHONPATH=. python
benchmarks/results/2026-12-06-linear/block.py``
"""

import time

import torch

from lsr import _core
from lsr._checks import check_smooth_ce
from lsr.torch._namespace import xp


def median_ms(call, repeats=5):
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return sorted(times)[repeats // 2] * 1e3


def main():
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for width, classes, row_counts in [
        (512, 32000, (512, 524)),
        (128, 32000, (512, 524)),
        (512, 128256, (128, 130)),
    ]:
        projection = torch.randn(classes, width) * 0.02
        grad_projection = torch.zeros(classes, width)
        for rows in row_counts:
            hidden = torch.randn(rows, width)
            labels = torch.randint(0, classes, (rows,))
            row_major = torch.empty(rows, classes)
            column_major = torch.empty(classes, rows).mT
            _, labels, spec = check_smooth_ce(
                row_major,
                labels,
                smoothing=0.1,
                prior="uniform",
                axis=1,
                ignore_index=-100,
                weight=None,
                reduction="none",
                namespace=xp,
            )
            d_hidden = torch.empty(rows, width)

            def block(
                out,
                hidden=hidden,
                labels=labels,
                spec=spec,
                d_hidden=d_hidden,
                projection=projection,
                grad_projection=grad_projection,
                rows=rows,
            ):
                logits = torch.mm(hidden, projection.mT, out=out)
                _, _, grad = _core.loss_and_grad(
                    logits, labels, spec, 1.0 / rows, xp=xp, with_grad=True, out=logits, aux={}
                )
                grad_projection.addmm_(grad.mT, hidden)
                torch.mm(grad, projection, out=d_hidden)

            timed = {"row-major": [], "column-major": []}
            products = {"row-major": [], "column-major": []}
            for _ in range(2):
                for name, out in (("row-major", row_major), ("column-major", column_major)):
                    timed[name].append(median_ms(lambda out=out: block(out)))
                    products[name].append(
                        median_ms(
                            lambda out=out, h=hidden, p=projection: torch.mm(h, p.mT, out=out)
                        )
                    )
            for name in timed:
                per_row = " ".join(f"{t * 1e3 / rows:.0f}" for t in timed[name])
                product = " ".join(f"{t:.1f}" for t in products[name])
                print(
                    f"d={width} K={classes} rows={rows} {name:12s} block: {per_row} "
                    f"microseconds per row; logits product alone: {product} ms"
                )


if __name__ == "__main__":
    main()
