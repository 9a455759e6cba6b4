"""Speed and memory of lsr against each framework's own label-smoothed cross-entropy.

Run ``python -m benchmarks.run --quick`` (or ``nox -s benchmarks``); see ``benchmarks.run``.
Each backend module (``benchmarks.torch_backend``, ``benchmarks.jax_backend``,
``benchmarks.tensorflow_backend``) provides the same four things, so the harness in
``benchmarks.common`` stays generic: ``make_inputs``, the lsr loss, the baseline losses and
``sync`` (what to wait on before reading the clock), plus a peak-memory probe.
"""
