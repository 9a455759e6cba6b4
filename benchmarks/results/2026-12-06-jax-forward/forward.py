"""JAX under ``jax.jit`` on the CPU, the loss alone and forward + backward: lsr's
``smooth_ce(reduction="mean")`` against the closed form ``logsumexp(z) - (1 - eps) z_y -
eps mean(z)`` (differentiated by JAX), at the benchmark matrix's large-K shapes, 4096 x
1000 and the segmentation layout (class axis 1), float32 and bfloat16. Each row prints
milliseconds per call (the harness's ``time_calls``: medians of 5 rounds, the two losses
taking turns), the minor page faults per call of each over three more calls (a buffer
that a program allocates anew and writes on every call faults once per 4 KiB page), and
the temporary bytes of lsr's compiled loss alone (``memory_analysis``) as a multiple of
the float32 logits.

Run from a checkout's root, the same script on two commits in a row:
``PYTHONPATH=. python benchmarks/results/2026-12-06-jax-forward/forward.py``
"""

import platform
import resource
import subprocess

import jax
import jax.numpy as jnp

import lsr.jax
from benchmarks.common import time_calls

# (The segmentation layout of the matrix, class axis 1, here without ignored labels.)
SHAPES = [(4096, 1000), (2048, 32000), (1024, 128000), (8, 21, 256, 256)]
EPS = 0.1


def closed_form(z, y):
    z = z.astype(jnp.float32)
    lse = jax.nn.logsumexp(z, axis=1)
    target = jnp.take_along_axis(z, jnp.expand_dims(y, 1), axis=1)[:, 0]
    return jnp.mean(lse - (1 - EPS) * target - EPS * jnp.mean(z, axis=1))


def smooth_ce(z, y):
    return lsr.jax.smooth_ce(z, y, smoothing=EPS, axis=1, reduction="mean")


def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def main():
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    machine = platform.machine()
    with open("/proc/cpuinfo") as cpuinfo:
        info = cpuinfo.read()
    names = [line.split(":", 1)[1].strip() for line in info.splitlines() if "model name" in line]
    machine = f"{names[0] if names else machine}, AVX-512: {'avx512f' in info}"
    print(f"commit {head.stdout.strip()}, jax {jax.__version__}, {machine}")
    for dtype in ("float32", "bfloat16"):
        for shape in SHAPES:
            n, k = shape[0], shape[1]
            size = n * k * (shape[2] * shape[3] if len(shape) == 4 else 1)
            z = jax.random.normal(jax.random.key(0), shape).astype(dtype)
            y = jax.random.randint(jax.random.key(1), (n, *shape[2:]), 0, k)
            for mode in ("forward", "forward+backward"):
                steps = {}
                for name, fn in (("closed form", closed_form), ("lsr", smooth_ce)):
                    jitted = jax.jit(fn if mode == "forward" else jax.value_and_grad(fn))
                    steps[name] = lambda jitted=jitted, z=z, y=y: jitted(z, y)
                    jax.block_until_ready(steps[name]())
                temp = jax.jit(smooth_ce).lower(z, y).compile().memory_analysis().temp_size_in_bytes
                calls = max(2, int(2e7 / size))
                times = time_calls(
                    steps, jax.block_until_ready, calls=calls, repeats=5, max_pair_s=60.0
                )
                faulted = {}
                for name, step in steps.items():
                    before = faults()
                    for _ in range(3):
                        jax.block_until_ready(step())
                    faulted[name] = (faults() - before) / 3
                lsr_ms = times["lsr"]["median_s"] * 1e3
                rival_ms = times["closed form"]["median_s"] * 1e3
                print(
                    f"{'x'.join(map(str, shape))} {dtype} {mode}: "
                    f"closed form {rival_ms:.2f} ms, lsr {lsr_ms:.2f} ms "
                    f"({lsr_ms / rival_ms:.2f}); page faults per call {faulted['closed form']:.0f} "
                    f"and {faulted['lsr']:.0f}; lsr's temporaries "
                    f"{temp / (size * 4):.2f} x the float32 logits",
                    flush=True,
                )


if __name__ == "__main__":
    main()
