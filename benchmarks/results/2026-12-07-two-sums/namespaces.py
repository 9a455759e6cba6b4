"""The core's pass under ``jax.custom_jvp`` and ``jax.jit``, forward + backward of the mean
loss, with the JAX namespace's variadic reduction (``variadic``) and without it (``two
sums``), against the closed form differentiated by JAX, in float32 (the arms of
benchmarks/results/2026-12-07-jax-sums/sums.py, which this imports with two_sums.py's
closed form, at the shapes that settle ``pass_namespace``'s bounds: K = 65,536 and a
segmentation layout with the classes on axis 1), taking turns (``time_calls``: medians
of 10 rounds of 5 calls), milliseconds and each over the closed form's. Output:
namespaces.txt, two runs: the first (on 982dc88) by this script's first form, run from
outside the repository (the same arms, shapes and timer, its closed form its own), the
second (on e223bc8) by this script as it was committed; each first line, the commit,
written by hand.

Run from a checkout's root:
``PYTHONPATH=. python benchmarks/results/2026-12-07-two-sums/namespaces.py``
"""

import functools
import gc
import sys

import jax

sys.path.insert(0, "benchmarks/results/2026-12-07-jax-sums")
sys.path.insert(0, "benchmarks/results/2026-12-07-two-sums")
from sums import TwoSums, _namespace, prepare_smooth_ce, time_calls, with_namespace
from two_sums import closed

SHAPES = [
    ((4096, 1000), -1),
    ((2048, 32000), -1),
    ((512, 65536), -1),
    ((1024, 128000), -1),
    ((8, 21, 256, 256), 1),
]


def ours(namespace, spec):
    loss = with_namespace(namespace)
    return lambda a, b: loss(a.astype("float32"), b, spec)


def main():
    for shape, axis in SHAPES:
        z = 3 * jax.random.normal(jax.random.PRNGKey(0), shape)
        positions = shape[:-1] if axis == -1 else (shape[0], *shape[2:])
        y = jax.random.randint(jax.random.PRNGKey(1), positions, 0, shape[axis])
        with jax.ensure_compile_time_eval():
            spec = prepare_smooth_ce(
                z,
                y,
                smoothing=0.1,
                prior="uniform",
                axis=axis,
                ignore_index=None,
                weight=None,
                where=None,
                reduction="mean",
                kl=False,
                z_loss=0.0,
            )[3]
        functions = {
            "closed": closed(axis),
            "variadic": ours(_namespace.xp, spec),
            "two sums": ours(TwoSums(), spec),
        }
        calls = {
            name: functools.partial(jax.jit(jax.value_and_grad(f)), z, y)
            for name, f in functions.items()
        }
        for call in calls.values():
            jax.block_until_ready(call())
        gc.collect()
        gc.freeze()
        times = time_calls(calls, jax.block_until_ready, calls=5, repeats=10, max_pair_s=10.0)
        gc.unfreeze()
        ms = {name: value["median_s"] * 1e3 for name, value in times.items()}
        print(
            "x".join(map(str, shape)),
            "float32",
            f"closed {ms['closed']:.3f};",
            "; ".join(
                f"{name} {ms[name]:.3f} ({ms[name] / ms['closed']:.3f})"
                for name in ("variadic", "two sums")
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
