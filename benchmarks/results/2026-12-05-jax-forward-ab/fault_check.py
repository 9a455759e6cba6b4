"""The jitted forward pass alone at 4096 x 1000, with its page faults.

Run from a checkout's root (its ``lsr`` is the one imported)::

    taskset -c 1 python fault_check.py fwd 100 bfloat16,float32

``fwd`` times the loss, anything else its value and gradient. Prints, per dtype, the
median and minimum time of the jitted calls (after 20) and the CPU time, user and system
time and minor page faults per call (``getrusage``)."""

import os
import resource
import sys
import time

sys.path.insert(0, os.getcwd())

import jax
import jax.numpy as jnp
import numpy as np

import lsr
from lsr.jax import smooth_ce

assert lsr.__file__.startswith(os.getcwd()), lsr.__file__
rng = np.random.default_rng(0)
logits = rng.standard_normal((4096, 1000)) * 3
labels = jnp.asarray(rng.integers(0, 1000, 4096), dtype=jnp.int32)
mode, calls, dtypes = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")


def loss(x, y):
    return smooth_ce(x, y, smoothing=0.1, reduction="mean")


out = []
for dtype in dtypes:
    x = jnp.asarray(logits, dtype=dtype)
    step = jax.jit(loss) if mode == "fwd" else jax.jit(jax.value_and_grad(loss))
    for _ in range(20):
        jax.block_until_ready(step(x, labels))
    times = []
    before, cpu = resource.getrusage(resource.RUSAGE_SELF), time.process_time()
    for _ in range(calls):
        start = time.perf_counter()
        jax.block_until_ready(step(x, labels))
        times.append(time.perf_counter() - start)
    after, cpu = resource.getrusage(resource.RUSAGE_SELF), (time.process_time() - cpu) / calls
    user = (after.ru_utime - before.ru_utime) / calls
    system = (after.ru_stime - before.ru_stime) / calls
    faults = (after.ru_minflt - before.ru_minflt) / calls
    out.append(
        f"{dtype} med {np.median(times) * 1e3:.3f} min {np.min(times) * 1e3:.3f} "
        f"cpu/call {cpu * 1e3:.3f} usr {user * 1e3:.3f} sys {system * 1e3:.3f} "
        f"minflt {faults:.0f}"
    )
print(os.path.basename(os.getcwd()), mode, " | ".join(out))
