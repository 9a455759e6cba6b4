"""JAX under ``jax.jit``, forward + backward (``jax.value_and_grad``) of the mean loss:
the core's pass beside its gradient with the namespace's one variadic reduction for the
sums of ``s`` and ``exp(s)`` (``sum_and_sum_exp``, what ``lsr.jax`` does) against the
same pass with two plain sums (the namespace without ``sum_and_sum_exp``), and the
closed form ``logsumexp(z) - (1 - eps) z_y - eps mean(z)`` differentiated by JAX, in one
process, the three calls taking turns (the harness's ``time_calls``: medians of 9
rounds of 5 calls), milliseconds and each over the closed form's. Both lsr arms are
the core under a ``jax.custom_jvp`` as in ``lsr.jax._functional`` (the namespace the
only difference), on float32 logits (bfloat16 converted first, as the adapter does).

Each line also gives the loss's relative error against float64 (NumPy) for each of the
three. A lead, not a change (sums.txt, on 5d3ff3a):

* float32: the two plain sums were the faster at every K from 1,000 to 32,000
  (1.02-1.35 times the closed form's time, against 1.30-2.00 for the variadic
  reduction; at 256 x 10 the two were level), and far the slower at 1024 x 128000 (1.77
  against 1.32), where XLA's fused sum of ``top - z`` over such long rows is slow (the
  loss alone's ``sum_shifted`` is the same sum).
* bfloat16: the variadic reduction was the faster at every shape from K = 1,000 up but
  256 x 16384; some rows are bimodal (the closed form and the two sums took about 4 or
  about 12 ms at 1024 x 4096 from run to run: the page faults of
  docs/large_vocabularies.md).
* Accuracy: the variadic reduction accumulates each row in order, and its loss was the
  less accurate from K = 8192 up (relative error 1.8e-06 to 1.9e-06 at K = 32,000,
  1.0e-05 at 128,000, against 6.6e-08 to 1.2e-07 with the two sums).

Run from a checkout's root:
``PYTHONPATH=. python benchmarks/results/2026-12-07-jax-sums/sums.py``
"""

import functools
import gc
import subprocess

import jax
import jax.numpy as jnp
import numpy

from benchmarks.common import time_calls
from lsr import _core
from lsr._checks import prepare_smooth_ce
from lsr.jax import _namespace

SHAPES = [
    (256, 10),
    (4096, 1000),
    (1024, 4096),
    (512, 8192),
    (256, 16384),
    (512, 32000),
    (2048, 32000),
    (1024, 128000),
]


class TwoSums(_namespace._Namespace):
    """The namespace without the variadic reduction (the core then takes two sums)."""

    sum_and_sum_exp = None


def with_namespace(xp):
    @functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
    def loss(z, y, spec):
        return _core.smooth_ce(z, y, spec, xp=xp)[0]

    @loss.defjvp
    def loss_jvp(spec, primals, tangents):
        z, y = primals
        dz, _ = tangents
        value, grad = _core.reduced_loss_and_grad(z, y, spec, xp=xp)
        return value, jnp.sum(grad * dz)

    return loss


def closed(z, y):
    z = z.astype(jnp.float32)
    lse = jax.nn.logsumexp(z, axis=-1)
    target = jnp.take_along_axis(z, y[:, None], axis=-1)[:, 0]
    return jnp.mean(lse - 0.9 * target - 0.1 * z.mean(-1))


def float64_loss(z, y):
    """The mean loss in float64 (NumPy), of the float32 logits the passes take."""
    z = numpy.asarray(z.astype(jnp.float32), numpy.float64)
    y = numpy.asarray(y)
    top = z.max(axis=1)
    lse = numpy.log(numpy.exp(z - top[:, None]).sum(axis=1)) + top
    return float(numpy.mean(lse - 0.9 * z[numpy.arange(len(y)), y] - 0.1 * z.mean(axis=1)))


def steps(z, y, spec):
    variadic, two = with_namespace(_namespace.xp), with_namespace(TwoSums())
    functions = {
        "closed": jax.jit(jax.value_and_grad(closed)),
        "variadic": jax.jit(
            jax.value_and_grad(lambda a, b: variadic(a.astype("float32"), b, spec))
        ),
        "two sums": jax.jit(jax.value_and_grad(lambda a, b: two(a.astype("float32"), b, spec))),
    }
    return {name: functools.partial(f, z, y) for name, f in functions.items()}


def main():
    revision = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    print("commit", revision, "jax", jax.__version__)
    for n, k in SHAPES:
        for dtype in (jnp.float32, jnp.bfloat16):
            z = (3 * jax.random.normal(jax.random.PRNGKey(0), (n, k))).astype(dtype)
            y = jax.random.randint(jax.random.PRNGKey(1), (n,), 0, k)
            with jax.ensure_compile_time_eval():
                spec = prepare_smooth_ce(
                    z,
                    y,
                    smoothing=0.1,
                    prior="uniform",
                    axis=-1,
                    ignore_index=None,
                    weight=None,
                    where=None,
                    reduction="mean",
                    kl=False,
                    z_loss=0.0,
                )[3]
            calls = steps(z, y, spec)
            values = {name: float(call()[0]) for name, call in calls.items()}
            reference = float64_loss(z, y)
            errors = {name: abs(value - reference) / reference for name, value in values.items()}
            gc.collect()
            gc.freeze()
            times = time_calls(calls, jax.block_until_ready, calls=5, repeats=9, max_pair_s=10.0)
            gc.unfreeze()
            ms = {name: value["median_s"] * 1e3 for name, value in times.items()}
            parts = [f"closed {ms['closed']:.3f}"] + [
                f"{name} {ms[name]:.3f} ({ms[name] / ms['closed']:.3f})"
                for name in ("variadic", "two sums")
            ]
            parts.append(
                "loss's relative error "
                + ", ".join(f"{name} {error:.1e}" for name, error in errors.items())
            )
            print(f"{n}x{k} {jnp.dtype(dtype).name}: {'; '.join(parts)}", flush=True)


if __name__ == "__main__":
    main()
