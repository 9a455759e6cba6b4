"""Checks on 8 simulated CPU devices, run by test_jax_sharding.py in a subprocess.

XLA reads ``--xla_force_host_platform_device_count`` once, when JAX starts, so these
cases run in their own pytest process (``python -m pytest`` on this file, with
``XLA_FLAGS`` set); test_jax_sharding.py starts it and requires every case to pass.

* jitted ``lsr.jax.smooth_ce`` on logits sharded along the batch axis, the class axis or
  both (``NamedSharding``) equals the single-device loss and gradient, and its compiled
  HLO moves no logits-sized array between devices (no all-gather of the logits);
* the detector of that HLO check flags programs that do gather the logits;
* ``lsr.jax.vocab_parallel_smooth_ce`` inside ``jax.shard_map`` equals the unsharded
  ``lsr.jax.smooth_ce``: loss and every device's gradient slice, float32 and float64.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

# K large enough that a device's share of the logits (N K / 8) is far more than a few
# values per position and device: the JAX adapter sums the shifted logits in one variadic
# reduce, which XLA partitions as per-device partials (N x 8) gathered, not all-reduced.
N, K = 16, 256
COLLECTIVE = re.compile(
    r"=\s*(?P<result>.*?)\s*"
    r"(?P<op>all-gather|all-reduce|all-to-all|collective-permute|reduce-scatter)(?:-start)?\("
)
ARRAY = re.compile(r"\b[a-z]+[0-9]*\[([0-9,]*)\]")


def collectives(hlo_text):
    """(op, [result shapes]) for every collective of a compiled HLO module's text."""
    found = []
    for line in hlo_text.splitlines():
        match = COLLECTIVE.search(line)
        if match:
            shapes = [
                tuple(int(d) for d in dims.split(",") if d)
                for dims in ARRAY.findall(match.group("result"))
            ]
            found.append((match.group("op"), shapes))
    return found


def logits_sized_collectives(hlo_text, logits_shape, num_devices):
    """Collectives whose result is as large as one device's share of the logits, or larger.

    lsr's collectives carry a few values per position and device (N of them, or N x 8
    partial sums; far fewer than one device's N K / 8 logits); gathering the logits (or a
    class-axis slab of them) does not.
    """
    shard_elements = int(np.prod(logits_shape)) // num_devices
    return [
        (op, shape)
        for op, shapes in collectives(hlo_text)
        for shape in shapes
        if int(np.prod(shape, dtype=np.int64)) >= shard_elements or shape == tuple(logits_shape)
    ]


@pytest.fixture(scope="module")
def jax_env():
    import jax

    jax.config.update("jax_enable_x64", True)
    devices = jax.devices()
    assert len(devices) == 8, "run with XLA_FLAGS=--xla_force_host_platform_device_count=8"
    from jax.sharding import Mesh

    return jax, Mesh(np.array(devices).reshape(2, 4), ("batch", "vocab"))


def _data(dtype, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=3.0, size=(N, K)).astype(dtype)
    labels = rng.integers(0, K, size=N)
    labels[3] = -100
    prior = np.linspace(1.0, 2.0, K)
    return {
        "logits": logits,
        "labels": labels,
        "weight": np.linspace(0.5, 1.5, K).astype(dtype),
        "prior": (prior / prior.sum()).astype(dtype),
        "where": np.arange(N) % 5 != 1,
        "position_weights": np.linspace(1.0, 2.0, N).astype(dtype),
    }


def _tolerance(dtype):
    return dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)


def _assert_same(actual, expected, dtype):
    for got, want in zip(actual, expected, strict=True):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), **_tolerance(dtype))


def _two_losses(jax, data):
    """Loss and gradient of two option sets that cover the priors, weights and masks."""
    import lsr.jax

    def losses(z, y, weight, prior, where, position_weights):
        mean = lsr.jax.smooth_ce(z, y, smoothing=0.1, ignore_index=-100, kl=True, reduction="mean")
        per_position = lsr.jax.smooth_ce(
            z,
            y,
            smoothing=0.2,
            prior=prior,
            weight=weight,
            where=where,
            ignore_index=-100,
            reduction="none",
            z_loss=1e-3,
        )
        others = lsr.jax.smooth_ce(
            z, y, smoothing=0.3, prior="others", weight=weight, ignore_index=-100, reduction="sum"
        )
        return mean + jax.numpy.sum(per_position * position_weights) + others

    return jax.jit(jax.value_and_grad(losses))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "layout", ["batch", "classes", "both"], ids=["batch", "classes", "batch_and_classes"]
)
def test_jitted_loss_on_sharded_logits_equals_single_device_and_gathers_nothing(
    jax_env, layout, dtype
):
    jax, mesh = jax_env
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    data = _data(dtype)
    spec = {
        "batch": P(("batch", "vocab"), None),
        "classes": P(None, ("batch", "vocab")),
        "both": P("batch", "vocab"),
    }[layout]
    names = ("logits", "labels", "weight", "prior", "where", "position_weights")
    specs = (spec, P(spec[0]), P(), P(), P(spec[0]), P(spec[0]))
    sharded = [
        jax.device_put(data[name], NamedSharding(mesh, s))
        for name, s in zip(names, specs, strict=True)
    ]
    single = [jax.device_put(data[name], jax.devices()[0]) for name in names]
    step = _two_losses(jax, data)

    value, grad = step(*sharded)
    expected_value, expected_grad = step(*single)
    _assert_same((value, grad), (expected_value, expected_grad), dtype)
    assert grad.sharding.spec == spec or grad.sharding.is_equivalent_to(
        NamedSharding(mesh, spec), 2
    )

    hlo = step.lower(*sharded).compile().as_text()
    assert collectives(hlo), "a sharded reduction needs at least one all-reduce"
    assert logits_sized_collectives(hlo, (N, K), 8) == []


def test_detector_flags_programs_that_gather_the_logits(jax_env):
    jax, mesh = jax_env
    import optax
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    logits = jax.device_put(_data(np.float32)["logits"], NamedSharding(mesh, P("batch", "vocab")))

    # 1. An explicit all-gather of the class axis inside shard_map.
    def gather_classes(z):
        return jax.lax.all_gather(z, "vocab", axis=1, tiled=True)

    explicit = jax.jit(
        jax.shard_map(
            gather_classes,
            mesh=mesh,
            in_specs=P("batch", "vocab"),
            out_specs=P("batch", None),
            check_vma=False,
        )
    )
    found = logits_sized_collectives(explicit.lower(logits).compile().as_text(), (N, K), 8)
    assert ("all-gather", (N // 2, K)) in found

    # 2. A loss that asks for replicated logits (a naive "gather, then compute").
    def replicated_loss(z):
        z = jax.lax.with_sharding_constraint(z, NamedSharding(mesh, P()))
        labels = jax.numpy.zeros(N, jax.numpy.int32)
        return jax.numpy.mean(optax.softmax_cross_entropy_with_integer_labels(z, labels))

    hlo = jax.jit(replicated_loss).lower(logits).compile().as_text()
    assert logits_sized_collectives(hlo, (N, K), 8) != []


def _vocab_parallel_case(jax, mesh, data, options, sliced):
    """Loss and gradient of all three reductions: unsharded vs shard_map, in one program."""
    from jax.sharding import PartitionSpec as P

    import lsr.jax

    jnp = jax.numpy
    position_weights = jnp.asarray(data["position_weights"])
    vector_spec = P("vocab") if sliced else P()

    def run(z, y, weight, prior, where):
        results = {}
        for reduction in ("mean", "sum", "none"):
            kwargs = {**options, "reduction": reduction}
            if "weight" in options:
                kwargs["weight"] = weight
            if options.get("prior") == "vector":
                kwargs["prior"] = prior
            if "where" in options:
                kwargs["where"] = where

            def scalar(loss, reduction=reduction):
                return jnp.sum(loss * position_weights) if reduction == "none" else loss

            def single(z, kwargs=kwargs, scalar=scalar):
                return scalar(lsr.jax.smooth_ce(z, y, **kwargs))

            def body(z, y, weight, prior, where, kwargs=kwargs):
                kwargs = dict(kwargs)
                if "weight" in kwargs:
                    kwargs["weight"] = weight
                if "prior" in options and options["prior"] == "vector":
                    kwargs["prior"] = prior
                if "where" in kwargs:
                    kwargs["where"] = where
                return lsr.jax.vocab_parallel_smooth_ce(
                    z, y, axis_name="vocab", batch_axis_name="batch", **kwargs
                )

            mapped = jax.shard_map(
                body,
                mesh=mesh,
                in_specs=(P("batch", "vocab"), P("batch"), vector_spec, vector_spec, P("batch")),
                out_specs=P("batch") if reduction == "none" else P(),
            )

            def sharded(z, mapped=mapped, scalar=scalar):
                return scalar(mapped(z, y, weight, prior, where))

            results[reduction] = (
                jax.value_and_grad(single)(z),
                jax.value_and_grad(sharded)(z),
            )
        return results

    args = [jnp.asarray(data[name]) for name in ("logits", "labels", "weight", "prior", "where")]
    step = jax.jit(run)
    return step(*args), step.lower(*args).compile().as_text()


VOCAB_CASES = {
    "uniform": (dict(smoothing=0.1, ignore_index=-100), False),
    "uniform-kl": (dict(smoothing=0.2, ignore_index=-100, kl=True, z_loss=1e-3), False),
    "others-weight-where": (
        dict(smoothing=0.3, prior="others", weight=True, where=True, ignore_index=-100, kl=True),
        True,
    ),
    "vector-weight-sliced": (
        dict(smoothing=0.25, prior="vector", weight=True, ignore_index=-100, kl=True),
        True,
    ),
    "vector-whole": (dict(smoothing=0.25, prior="vector", where=True, ignore_index=-100), False),
    # The entropy's sum goes in the same psum; its gradient is JAX's autodiff through it.
    "penalty-softcap": (
        dict(smoothing=0.1, ignore_index=-100, confidence_penalty=0.3, softcap=4.0, z_loss=1e-3),
        False,
    ),
}


@pytest.mark.parametrize(
    ("case", "dtype"),
    [(case, np.float64) for case in VOCAB_CASES]
    + [("uniform", np.float32), ("others-weight-where", np.float32)],
)
def test_vocab_parallel_equals_unsharded(jax_env, case, dtype):
    jax, mesh = jax_env
    options, sliced = VOCAB_CASES[case]
    results, hlo = _vocab_parallel_case(jax, mesh, _data(dtype, seed=2), options, sliced)
    for reduction, (expected, actual) in results.items():
        try:
            _assert_same(actual, expected, dtype)
        except AssertionError as error:
            raise AssertionError(f"reduction={reduction}") from error
        assert np.isfinite(np.asarray(expected[1])).all()
    # The logits never move: per-position collectives only.
    assert logits_sized_collectives(hlo, (N, K), 8) == []


def _tied_case():
    """Logits (N, K) with ties for the maximum inside one device's classes and across
    devices (K / 4 = 64 classes each), labels on either side of them, one ignored."""
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(N, K))
    labels = rng.integers(0, K, size=N)
    logits[0] = 1.0  # constant: only class 0 is the first maximum
    labels[0] = 0
    logits[1] = 1.0  # constant, label on another device: wrong
    labels[1] = 100
    logits[2, [30, 200]] = 9.0  # tie across devices, label the first: right
    labels[2] = 30
    logits[3, [30, 200]] = 9.0  # tie across devices, label the second: wrong
    labels[3] = 200
    logits[4, [65, 70]] = 9.0  # tie on one device, label the second: wrong
    labels[4] = 70
    logits[5, labels[5]] = 9.0  # a clear maximum at the label: right
    labels[6] = -100
    return logits, labels


def test_vocab_parallel_aux_equals_reference(jax_env):
    """return_aux inside shard_map: the auxiliary outputs over all K classes (the
    correctness by the first maximum, counted across devices in the same psum), with the
    batch split too, equal the float64 reference for every reduction, with a soft cap;
    and with zero gradient."""
    jax, mesh = jax_env
    from jax.sharding import PartitionSpec as P

    import lsr.jax
    from tests import reference

    jnp = jax.numpy
    logits, labels = _tied_case()
    for softcap in (None, 20.0):
        for reduction in ("mean", "sum", "none"):
            options = dict(smoothing=0.1, ignore_index=-100, reduction=reduction, softcap=softcap)

            def body(z, y, options=options):
                return lsr.jax.vocab_parallel_smooth_ce(
                    z, y, axis_name="vocab", batch_axis_name="batch", return_aux=True, **options
                )

            out = P("batch") if reduction == "none" else P()
            mapped = jax.shard_map(
                body, mesh=mesh, in_specs=(P("batch", "vocab"), P("batch")), out_specs=(out, out)
            )
            loss, aux = jax.jit(mapped)(jnp.asarray(logits), jnp.asarray(labels))
            expected = reference.aux_outputs(
                logits, labels, ignore_index=-100, reduction=reduction, softcap=softcap
            )
            for name in ("nll", "lse", "entropy", "correct"):
                np.testing.assert_allclose(
                    np.asarray(getattr(aux, name)),
                    expected[name],
                    err_msg=f"{name}, {reduction}, softcap={softcap}",
                    **_tolerance(np.float64),
                )
            single = lsr.jax.smooth_ce(jnp.asarray(logits), jnp.asarray(labels), **options)
            np.testing.assert_allclose(np.asarray(loss), np.asarray(single), rtol=1e-12)
    # The correctness this case was built for, spelled out.
    per_position = reference.aux_outputs(logits, labels, ignore_index=-100, reduction="none")
    assert list(per_position["correct"][:7]) == [1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0]

    def accuracy(z):
        _, aux = jax.shard_map(
            lambda z, y: lsr.jax.vocab_parallel_smooth_ce(
                z, y, axis_name="vocab", ignore_index=-100, reduction="mean", return_aux=True
            ),
            mesh=mesh,
            in_specs=(P(None, "vocab"), P()),
            out_specs=(P(), P()),
        )(z, jnp.asarray(labels))
        return aux.nll + aux.entropy

    assert not np.asarray(jax.grad(accuracy)(jnp.asarray(logits))).any()


def test_vocab_parallel_bad_input(jax_env):
    jax, mesh = jax_env
    from jax.sharding import PartitionSpec as P

    import lsr.jax

    jnp = jax.numpy
    data = _data(np.float64)
    logits, labels = jnp.asarray(data["logits"]), jnp.asarray(data["labels"])

    def mapped(**kwargs):
        kwargs = {"reduction": "mean", **kwargs}  # a scalar, for value_and_grad
        return jax.shard_map(
            lambda z, y: lsr.jax.vocab_parallel_smooth_ce(z, y, axis_name="vocab", **kwargs),
            mesh=mesh,
            in_specs=(P(None, "vocab"), P()),
            out_specs=P(),
        )

    with pytest.raises(ValueError, match=r"axis_name.*shard_map.*'classes'"):
        lsr.jax.vocab_parallel_smooth_ce(logits, labels, axis_name="classes")
    with pytest.raises(ValueError, match=rf"weight.*\({K},\).*\({K // 4},\)"):
        mapped(weight=jnp.ones(10), ignore_index=-100)(logits, labels)
    with pytest.raises(ValueError, match=r"smoothing"):
        mapped(smoothing=1.5, ignore_index=-100)(logits, labels)
    # Labels out of the GLOBAL range (they are concrete here: checked at trace time).
    bad = labels.at[0].set(K)

    def closed(z):
        return jax.shard_map(
            lambda z: lsr.jax.vocab_parallel_smooth_ce(
                z, bad, axis_name="vocab", ignore_index=-100
            ),
            mesh=mesh,
            in_specs=P(None, "vocab"),
            out_specs=P(),
        )(z)

    with pytest.raises(ValueError, match=rf"\[0, {K}\)"):
        jax.jit(closed)(logits)
    # Traced, they make the loss NaN; an id of another device's shard is not out of range.
    loss, grad = jax.jit(jax.value_and_grad(mapped(ignore_index=-100)))(logits, bad)
    assert np.isnan(float(loss))
    # As in lsr.jax.smooth_ce: the bad position's gradient row is NaN too.
    assert np.isnan(np.asarray(grad)[0]).all() and np.isfinite(np.asarray(grad)[1:]).all()
    in_range = jax.jit(mapped(ignore_index=-100))(logits, labels.at[0].set(K - 1))
    assert np.isfinite(float(in_range))
    # Prior slices that each sum to 1 are gathered and checked whole: the whole sums to
    # the number of devices, so the traced loss is NaN, not a plausible number.
    num_local = K // 4

    def sliced_prior(z, prior):
        return jax.shard_map(
            lambda z, prior: lsr.jax.vocab_parallel_smooth_ce(
                z, labels, axis_name="vocab", prior=prior, reduction="mean", ignore_index=-100
            ),
            mesh=mesh,
            in_specs=(P(None, "vocab"), P("vocab")),
            out_specs=P(),
        )(z, prior)

    assert np.isnan(float(jax.jit(sliced_prior)(logits, jnp.full(K, 1.0 / num_local))))
    assert np.isfinite(float(jax.jit(sliced_prior)(logits, jnp.full(K, 1.0 / K))))


def test_vocab_parallel_batch_mean_with_a_zero_weight_batch_shard(jax_env):
    """One batch shard's kept positions all have class weight 0: its own denominator is
    0 (PyTorch's 0/0 would make it NaN), the global one is not, so the global mean is
    the single-device mean, finite."""
    jax, mesh = jax_env
    from jax.sharding import PartitionSpec as P

    import lsr.jax

    jnp = jax.numpy
    rng = np.random.default_rng(3)
    logits = jnp.asarray(rng.normal(size=(4, 8)))
    labels = jnp.asarray([1, 1, 0, 2])  # batch shard 0 holds rows 0-1: class 1 only
    weight = jnp.asarray([1.0, 0.0, 2.0, 1.0, 1.0, 1.0, 0.5, 1.5])

    def loss(z, y, w):
        return lsr.jax.vocab_parallel_smooth_ce(
            z,
            y,
            axis_name="vocab",
            batch_axis_name="batch",
            weight=w,
            smoothing=0.1,
            reduction="mean",
        )

    sharded = jax.shard_map(
        loss, mesh=mesh, in_specs=(P("batch", "vocab"), P("batch"), P()), out_specs=P()
    )
    expected = lsr.jax.smooth_ce(logits, labels, weight=weight, smoothing=0.1, reduction="mean")
    assert np.isfinite(float(expected))
    actual = sharded(logits, labels, weight)
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), **_tolerance(np.float64))
