"""The jitted forward pass alone at 4096 x 1000, one process per call of this script.

Run from a checkout's root (its ``lsr`` is the one imported), e.g.::

    python ab.py bfloat16

Prints the median of 200 jitted calls (after 20), in ms, with the checkout's commit."""

import inspect
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import lsr.jax as lj

dtype = {"bfloat16": jnp.bfloat16, "float32": jnp.float32}[sys.argv[1]]
rng = np.random.default_rng(0)
x = jnp.asarray(rng.normal(size=(4096, 1000)), dtype=dtype)
y = jnp.asarray(rng.integers(0, 1000, 4096))
options = {"smoothing": 0.1}
if "reduction" in inspect.signature(lj.smooth_ce).parameters:
    options["reduction"] = "mean"
loss = jax.jit(lambda x, y: lj.smooth_ce(x, y, **options))
for _ in range(20):
    loss(x, y).block_until_ready()
times = []
for _ in range(int(sys.argv[2]) if len(sys.argv) > 2 else 200):
    start = time.perf_counter()
    loss(x, y).block_until_ready()
    times.append(time.perf_counter() - start)
commit = subprocess.run(
    ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
).stdout.strip()
print(f"{commit} {sys.argv[1]} {np.median(times) * 1e3:.2f} ms")
