"""``lsr.jax.linear_smooth_ce`` under ``jax.jit`` (value and gradients for the hidden
states and the kernel, smoothing 0.1, "mean") with 512-row blocks against 524-row
blocks (the rows 16 Mi logits make at K = 32000, JAX's default). Seconds per step, the
two taking turns, 5 rounds. (Recorded while 512 was briefly JAX's default too, hence
the label in ab.txt; the default stayed 524: see docs/benchmarks.md, 2026-12-06.)

Run from a checkout's root: ``PYTHONPATH=. python
benchmarks/results/2026-12-06-linear/jax_step.py``
"""

import time

import jax

import lsr.jax

ROWS, WIDTH, CLASSES = 8192, 512, 32000


def main():
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    hidden = jax.random.normal(keys[0], (ROWS, WIDTH))
    kernel = jax.random.normal(keys[1], (WIDTH, CLASSES)) * 0.02
    labels = jax.random.randint(keys[2], (ROWS,), 0, CLASSES)
    print(f"jax {jax.__version__}; N={ROWS} d={WIDTH} K={CLASSES}")

    def step(chunk_size):
        def loss(hidden, kernel):
            return lsr.jax.linear_smooth_ce(
                hidden, kernel, labels, smoothing=0.1, reduction="mean", chunk_size=chunk_size
            )

        return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))

    steps = {"512 rows": step(512), "524 rows (default)": step(None)}
    for call in steps.values():
        jax.block_until_ready(call(hidden, kernel))
    times = {name: [] for name in steps}
    for _ in range(5):
        for name, call in steps.items():
            start = time.perf_counter()
            jax.block_until_ready(call(hidden, kernel))
            times[name].append(time.perf_counter() - start)
    for name, values in times.items():
        listed = " ".join(f"{v:.2f}" for v in sorted(values))
        print(f"{name:20s} {listed}  median {sorted(values)[2]:.2f} s")


if __name__ == "__main__":
    main()
