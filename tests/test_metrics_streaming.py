"""The streaming calibration state (lsr.metrics.calibration_state and friends) on every
selected backend: a stream of batches gives the batch expected_calibration_error of their
concatenation (same norm, scope, debias, bin rule), states merge by adding, and
equal-mass bins made of a fine state's bins are the batch function's where no edge
falls inside a fine bin (and otherwise move that edge to the fine bin's top).

The reference is the batch function itself, whose numbers tests/test_metrics*.py tie to
hand-worked examples, torchmetrics and Kumar et al.'s package.
"""

from __future__ import annotations

import numpy as np
import pytest

from lsr import metrics
from tests.backends import assert_close, selected_backends

NORMS = [("l1", False), ("l1", True), ("l2", False), ("l2", True), ("max", False)]
SCOPES = ["top_label", "classwise", "thresholded"]
# The thresholded scope's threshold, given to the batch function and to every update of
# a stream (the state does not record it); high enough to leave probabilities out.
THRESHOLD = 0.2


def _threshold(scope):
    return {"threshold": THRESHOLD} if scope == "thresholded" else {}


EDGES = ["right", "left"]


def _random_logits(seed, n=97, num_classes=5):
    rng = np.random.default_rng(seed)
    logits = 2.5 * rng.normal(size=(n, num_classes))
    noise = rng.integers(0, num_classes, n)
    labels = np.where(rng.random(n) < 0.6, logits.argmax(axis=1), noise)
    return logits, labels


def _adversarial_probs():
    """Confidences exactly on the edges of 10 bins (ties: 0.5, 0.6, 0.3 several times),
    exactly 1.0 (one-hot rows), exactly 0.0 (classwise), bins left empty (nothing in
    (0.6, 0.9]), in float64 and exactly representable at the edges' rounding."""
    rows = [
        [1.0, 0.0, 0.0],
        [0.0, 1.0, 0.0],
        [0.5, 0.5, 0.0],
        [0.5, 0.25, 0.25],
        [0.6, 0.4, 0.0],
        [0.4, 0.6, 0.0],
        [0.6, 0.2, 0.2],
        [0.3, 0.3, 0.4],
        [0.95, 0.05, 0.0],
        [0.0, 0.0, 1.0],
        [0.5, 0.0, 0.5],
    ]
    labels = [0, 0, 1, 0, 1, 1, 2, 2, 0, 2, 2]
    return np.array(rows), np.array(labels)


def _stream(backend, scores, labels, splits, *, n_bins, scope, bin_edges, from_logits):
    # (A thresholded stream is a classwise state whose updates pass the threshold.)
    state_scope = "classwise" if scope == "thresholded" else scope
    state = metrics.calibration_state(backend.asarray(scores), n_bins=n_bins, scope=state_scope)
    for part, part_labels in zip(np.split(scores, splits), np.split(labels, splits), strict=True):
        state = metrics.update_calibration_state(
            state,
            backend.asarray(part),
            backend.asarray(part_labels),
            from_logits=from_logits,
            bin_edges=bin_edges,
            **_threshold(scope),
        )
    return state


def _batch(backend, scores, labels, **options):
    value = metrics.expected_calibration_error(
        backend.asarray(scores), backend.asarray(labels), **options,
        **_threshold(options.get("scope")),
    )  # fmt: skip
    return float(backend.to_numpy(value))


@pytest.mark.parametrize("norm, debias", NORMS)
@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("bin_edges", EDGES)
@pytest.mark.parametrize("seed", range(2))
def test_a_stream_of_random_batches_is_the_batch_error(
    backend, seed, bin_edges, scope, norm, debias
):
    logits, labels = _random_logits(seed)
    # Uneven batches, one of a single example.
    splits = [30, 31, 64]
    state = _stream(
        backend,
        logits,
        labels,
        splits,
        n_bins=10,
        scope=scope,
        bin_edges=bin_edges,
        from_logits=True,
    )
    streamed = metrics.calibration_error_from_state(state, norm=norm, debias=debias)
    assert tuple(streamed.shape) == ()
    expected = _batch(
        backend,
        logits,
        labels,
        n_bins=10,
        norm=norm,
        scope=scope,
        bin_edges=bin_edges,
        debias=debias,
    )
    assert_close(backend.to_numpy(streamed), expected, "float64")
    # The comparison tells streams apart: a part of the stream alone has another error
    # (the first or the last batches: either could match by chance).
    parts = [
        _batch(
            backend,
            logits[part],
            labels[part],
            n_bins=10,
            norm=norm,
            scope=scope,
            bin_edges=bin_edges,
            debias=debias,
        )
        for part in (slice(64, None), slice(0, 64))
    ]
    assert max(abs(value - expected) for value in parts) > 1e-3


@pytest.mark.parametrize("norm, debias", NORMS)
@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("bin_edges", EDGES)
def test_a_stream_of_adversarial_batches_is_the_batch_error(
    backend, bin_edges, scope, norm, debias
):
    probs, labels = _adversarial_probs()
    # A batch of one first, then ties split across batches.
    splits = [1, 4, 9]
    state = _stream(
        backend,
        probs,
        labels,
        splits,
        n_bins=10,
        scope=scope,
        bin_edges=bin_edges,
        from_logits=False,
    )
    streamed = metrics.calibration_error_from_state(state, norm=norm, debias=debias)
    expected = _batch(
        backend, probs, labels, n_bins=10, norm=norm, scope=scope, bin_edges=bin_edges,
        debias=debias, from_logits=False,
    )  # fmt: skip
    assert_close(backend.to_numpy(streamed), expected, "float64")
    # Every example was counted once per column (above the threshold only, for the
    # thresholded scope); the empty bins stayed empty.
    count = backend.to_numpy(state.count)
    if scope == "thresholded":
        assert count.sum() == np.sum(probs > THRESHOLD) < probs.size
    else:
        assert count.sum() == len(labels) * (3 if scope == "classwise" else 1)
    if scope == "top_label":
        # The same examples in the same bins as the batch function, ties on edges and
        # empty bins included. (Confidences 0.4, 0.5 x3, 0.6 x3, 0.95, 1.0 x3: with
        # exact edges j/10 the ties move up one bin with [lo, hi). On JAX the batch
        # function's edge 6/10 rounds to 0.6 + 1e-16, so there 0.6 stays in bin 5.)
        diagram = metrics.reliability_diagram(
            backend.asarray(probs), backend.asarray(labels), n_bins=10, from_logits=False,
            bin_edges=bin_edges,
        )  # fmt: skip
        np.testing.assert_array_equal(count, backend.to_numpy(diagram.count))
        assert count[7:9].sum() == 0 and count[9] == 4


def test_edges_follow_bin_edges(backend):
    # Confidences 0.5 on the edge of two bins: (lo, hi] puts them in the first bin,
    # [lo, hi) in the second, exactly as the batch function does.
    probs = np.array([[0.5, 0.5], [0.5, 0.5], [0.75, 0.25]])
    labels = np.array([0, 1, 0])
    for bin_edges, expected in (("right", [2.0, 1.0]), ("left", [0.0, 3.0])):
        state = _stream(
            backend, probs, labels, [1], n_bins=2, scope="top_label", bin_edges=bin_edges,
            from_logits=False,
        )  # fmt: skip
        np.testing.assert_array_equal(backend.to_numpy(state.count), expected)


@pytest.mark.parametrize("scope", SCOPES)
def test_merging_the_states_of_a_split_is_the_state_of_the_whole(backend, scope):
    logits, labels = _random_logits(3, n=40)
    options = dict(n_bins=7, scope=scope, bin_edges="right", from_logits=True)
    whole = _stream(backend, logits, labels, [], **options)
    first = _stream(backend, logits[:13], labels[:13], [5], **options)
    second = _stream(backend, logits[13:], labels[13:], [20], **options)
    merged = metrics.merge_calibration_states(first, second)
    assert isinstance(merged, metrics.CalibrationState)
    for got, want in zip(merged, whole, strict=True):
        assert tuple(got.shape) == ((7,) if scope == "top_label" else (5, 7))
        assert_close(backend.to_numpy(got), backend.to_numpy(want), "float64")
    np.testing.assert_array_equal(backend.to_numpy(merged.count), backend.to_numpy(whole.count))
    # Merging is not a no-op: one half alone has fewer examples.
    assert backend.to_numpy(first.count).sum() < backend.to_numpy(whole.count).sum()


def test_a_state_accumulates_in_its_own_dtype(backend):
    logits, labels = _random_logits(4, n=20)
    like = backend.asarray(logits, "float32")
    state = metrics.calibration_state(like, n_bins=4, dtype=backend.xp.float64)
    assert state.count.dtype == backend.xp.float64
    state = metrics.update_calibration_state(state, like, backend.asarray(labels))
    assert state.correct_sum.dtype == backend.xp.float64
    # Binned in float32 as the batch function bins float32 scores.
    expected = _batch(backend, logits.astype(np.float32), labels, n_bins=4)
    assert_close(backend.to_numpy(metrics.calibration_error_from_state(state)), expected, "float32")
    default = metrics.calibration_state(like, n_bins=4)
    assert default.count.dtype == backend.xp.float32


def test_an_empty_state_has_no_error(backend):
    state = metrics.calibration_state(backend.asarray(np.zeros((1, 3))), n_bins=5)
    for norm in ("l1", "l2", "max"):
        value = metrics.calibration_error_from_state(state, norm=norm)
        assert np.isnan(backend.to_numpy(value))


def test_a_state_is_of_equal_width_bins(backend):
    like = backend.asarray(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"fine bins.*Received: binning='equal_mass'"):
        metrics.calibration_state(like, binning="equal_mass")


# A power of two: the centres (2k + 1) / (2 FINE) and 1 minus them are exact in binary, so
# ties stay ties in both classes' probabilities.
FINE = 256


def _on_fine_centres(seed, n):
    """Two-class probabilities whose every value (p and 1 - p) is the centre of one of
    FINE equal-width bins: two values in one fine bin are equal, so no equal-mass edge
    falls inside a fine bin except between ties, and the stream's bins are exact."""
    rng = np.random.default_rng(seed)
    first = (rng.integers(0, FINE, n) + 0.5) / FINE
    probs = np.stack([first, 1.0 - first], axis=1)
    labels = (rng.random(n) < np.clip(0.3 + first * 0.5, 0, 1)).astype(np.int64)
    return probs, 1 - labels


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize(("norm", "debias"), NORMS)
def test_equal_mass_bins_of_a_fine_stream_are_the_batch_bins(backend, scope, norm, debias):
    """On confidences at fine-bin centres (ties included: 300 values on 256 centres),
    the stream's equal-mass error after splits and a merge is the batch one."""
    probs, labels = _on_fine_centres(3, 300)
    weights = np.random.default_rng(4).integers(0, 3, 300)
    first = _stream(
        backend,
        probs[:170],
        labels[:170],
        [40, 90],
        n_bins=FINE,
        scope=scope,
        bin_edges="right",
        from_logits=False,
    )
    second = _stream(
        backend,
        probs[170:],
        labels[170:],
        [60],
        n_bins=FINE,
        scope=scope,
        bin_edges="right",
        from_logits=False,
    )
    state = metrics.merge_calibration_states(first, second)
    options = {"norm": norm, "debias": debias}
    got = metrics.calibration_error_from_state(state, binning="equal_mass", n_bins=7, **options)
    expected = _batch(
        backend,
        probs,
        labels,
        n_bins=7,
        scope=scope,
        binning="equal_mass",
        from_logits=False,
        **options,
    )
    assert_close(backend.to_numpy(got), expected, "float64")
    # Whole weights: the examples repeated, in the stream as in the batch.
    state = metrics.calibration_state(
        backend.asarray(probs),
        n_bins=FINE,
        scope="classwise" if scope == "thresholded" else scope,
    )
    state = metrics.update_calibration_state(
        state,
        backend.asarray(probs),
        backend.asarray(labels),
        from_logits=False,
        sample_weight=backend.asarray(weights),
        **_threshold(scope),
    )
    got = metrics.calibration_error_from_state(state, binning="equal_mass", n_bins=7, **options)
    value = metrics.expected_calibration_error(
        backend.asarray(probs),
        backend.asarray(labels),
        n_bins=7,
        scope=scope,
        binning="equal_mass",
        from_logits=False,
        sample_weight=backend.asarray(weights),
        **options,
        **_threshold(scope),
    )
    assert_close(backend.to_numpy(got), backend.to_numpy(value), "float64")


def test_equal_mass_bins_of_a_stream_never_cut_a_fine_bin(backend):
    """Random confidences: each edge moves to the top of the fine bin that holds the
    last example below it. Checked against the batch function on the examples with
    every confidence moved to its fine bin's top (where the moved edges are exact), and
    it differs from the exact batch error (so this is not the previous test again)."""
    logits, labels = _random_logits(8, n=300, num_classes=3)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    fine = 20
    state = _stream(
        backend,
        probs,
        labels,
        [100],
        n_bins=fine,
        scope="top_label",
        bin_edges="right",
        from_logits=False,
    )
    got = metrics.calibration_error_from_state(state, binning="equal_mass", n_bins=6)
    top = probs.max(axis=1)
    snapped = np.ceil(top * fine) / fine
    # The same bins, from the snapped confidences' equal-mass edges; each bin's mean
    # confidence and accuracy from the original examples.
    edges = np.asarray(
        metrics.reliability_diagram(
            np.stack([snapped, 1 - snapped], axis=1),
            (probs.argmax(1) != labels).astype(int),
            n_bins=6,
            from_logits=False,
            binning="equal_mass",
        ).edges
    )
    member = np.searchsorted(edges[1:-1], snapped, side="left")
    correct = (probs.argmax(axis=1) == labels).astype(float)
    expected = sum(
        np.mean(member == b) * abs(correct[member == b].mean() - top[member == b].mean())
        for b in range(6)
        if np.any(member == b)
    )
    assert_close(backend.to_numpy(got), expected, "float64")
    exact = metrics.expected_calibration_error(
        probs, labels, n_bins=6, from_logits=False, binning="equal_mass"
    )
    assert abs(float(exact) - expected) > 1e-4


def test_one_equal_mass_bin_of_a_state_is_every_example(backend):
    logits, labels = _random_logits(6, n=40)
    state = metrics.calibration_state(backend.asarray(logits), n_bins=50)
    state = metrics.update_calibration_state(
        state, backend.asarray(logits), backend.asarray(labels)
    )
    got = metrics.calibration_error_from_state(state, binning="equal_mass", n_bins=1)
    expected = _batch(backend, logits, labels, n_bins=1, binning="equal_mass", from_logits=True)
    assert_close(backend.to_numpy(got), expected, "float64")


def test_equal_mass_options_of_a_state_are_checked(backend):
    state = metrics.calibration_state(backend.asarray(np.zeros((2, 3))), n_bins=10)
    with pytest.raises(ValueError, match=r"10 fine bins.*Received: n_bins=15"):
        metrics.calibration_error_from_state(state, binning="equal_mass", n_bins=15)
    with pytest.raises(TypeError, match=r"integer >= 1.*Received: n_bins=None"):
        metrics.calibration_error_from_state(state, binning="equal_mass")
    with pytest.raises(ValueError, match=r"only with binning='equal_mass'.*Received: n_bins=4"):
        metrics.calibration_error_from_state(state, n_bins=4)
    fractional = metrics.CalibrationState(*(a + 0.5 for a in state))
    with pytest.raises(ValueError, match=r"equal_mass.*whole numbers.*Received: state.count="):
        metrics.calibration_error_from_state(fractional, binning="equal_mass", n_bins=4)


def test_bad_arguments_are_refused_with_their_names(backend):
    logits, labels = _random_logits(5, n=8, num_classes=4)
    state = metrics.calibration_state(backend.asarray(logits), n_bins=3, scope="classwise")
    other = backend.asarray(np.zeros((8, 5)))
    with pytest.raises(
        ValueError, match=r"one row per class.*Received: state.count.shape=\(4, 3\)"
    ):
        metrics.update_calibration_state(state, other, backend.asarray(labels))
    with pytest.raises(TypeError, match=r"CalibrationState.*Received: state="):
        metrics.update_calibration_state("state", backend.asarray(logits), backend.asarray(labels))
    with pytest.raises(ValueError, match=r"Received: bin_edges='middle'"):
        metrics.update_calibration_state(
            state, backend.asarray(logits), backend.asarray(labels), bin_edges="middle"
        )
    with pytest.raises(ValueError, match=r"not for the maximum.*Received: norm='max'"):
        metrics.calibration_error_from_state(state, norm="max", debias=True)
    with pytest.raises(ValueError, match=r"Received: norm='l3'"):
        metrics.calibration_error_from_state(state, norm="l3")
    with pytest.raises(ValueError, match=r"Received: n_bins=0"):
        metrics.calibration_state(backend.asarray(logits), n_bins=0)
    top = metrics.calibration_state(backend.asarray(logits), n_bins=3)
    with pytest.raises(ValueError, match=r"same shape.*Received: second.count.shape=\(3,\)"):
        metrics.merge_calibration_states(state, top)
    with pytest.raises(ValueError, match=r"labels"):
        metrics.update_calibration_state(top, backend.asarray(logits), backend.asarray(labels[:3]))
    with pytest.raises(ValueError, match=r"one row of bins per class.*state.count.shape=\(3,\)"):
        metrics.update_calibration_state(
            top, backend.asarray(logits), backend.asarray(labels), threshold=0.1
        )
    with pytest.raises(ValueError, match=r"\[0, 1\).*Received: threshold=1.5"):
        metrics.update_calibration_state(
            state, backend.asarray(logits), backend.asarray(labels), threshold=1.5
        )


def test_a_thresholded_stream_with_nothing_above_the_threshold_has_no_error(backend):
    """A batch with no probability above the threshold adds nothing (a stream may have
    such batches); a whole stream of them has no error (NaN), where the batch function
    raises."""
    probs = np.full((4, 4), 0.25)
    labels = np.array([0, 1, 2, 3])
    state = metrics.calibration_state(backend.asarray(probs), n_bins=5, scope="classwise")
    state = metrics.update_calibration_state(
        state, backend.asarray(probs), backend.asarray(labels), from_logits=False, threshold=0.3
    )
    assert backend.to_numpy(state.count).sum() == 0
    assert np.isnan(backend.to_numpy(metrics.calibration_error_from_state(state)))
    with pytest.raises(ValueError, match=r"above `threshold`"):
        metrics.expected_calibration_error(
            backend.asarray(probs), backend.asarray(labels), from_logits=False,
            scope="thresholded", threshold=0.3,
        )  # fmt: skip


if "jax" in selected_backends():
    # JAX only (collected only when this session selects JAX): the state is a pytree
    # for jit, scan and psum.

    def _jax_batches():
        import jax.numpy as jnp

        logits, labels = _random_logits(6, n=96, num_classes=4)
        return (
            logits,
            labels,
            jnp.asarray(logits).reshape(4, 24, 4),
            jnp.asarray(labels).reshape(4, 24),
        )

    @pytest.mark.parametrize("scope", SCOPES)
    def test_jax_update_traces_under_jit_and_scan(scope):
        import jax

        logits, labels, batches, batch_labels = _jax_batches()
        traces = []

        @jax.jit
        def run(state, batches, batch_labels):
            def step(state, batch):
                traces.append(1)
                return metrics.update_calibration_state(state, *batch, **_threshold(scope)), None

            state, _ = jax.lax.scan(step, state, (batches, batch_labels))
            return state, metrics.calibration_error_from_state(state, norm="l2", debias=True)

        state_scope = "classwise" if scope == "thresholded" else scope
        state = metrics.calibration_state(batches, n_bins=6, scope=state_scope)
        state, value = run(state, batches, batch_labels)
        assert traces  # traced, not run eagerly
        expected = metrics.expected_calibration_error(
            logits, labels, n_bins=6, scope=scope, norm="l2", debias=True, **_threshold(scope)
        )
        assert_close(np.asarray(value), float(expected), "float64")
        assert isinstance(state, metrics.CalibrationState)

    def test_jax_psum_over_two_simulated_devices_merges_states():
        import jax

        logits, labels, batches, batch_labels = _jax_batches()
        state = metrics.calibration_state(batches, n_bins=6)

        def per_device(scores, device_labels):
            local = metrics.update_calibration_state(state, scores, device_labels)
            return jax.lax.psum(local, "devices")

        # vmap with a named axis is two devices for the collectives' semantics.
        shards = batches.reshape(2, 48, 4), batch_labels.reshape(2, 48)
        merged = jax.vmap(per_device, axis_name="devices")(*shards)
        whole = metrics.update_calibration_state(
            state, batches.reshape(96, 4), batch_labels.reshape(96)
        )
        for got, want in zip(merged, whole, strict=True):
            assert_close(np.asarray(got[0]), np.asarray(want), "float64")
            assert_close(np.asarray(got[1]), np.asarray(want), "float64")
        value = metrics.calibration_error_from_state(jax.tree.map(lambda a: a[0], merged))
        assert_close(
            np.asarray(value),
            float(metrics.expected_calibration_error(logits, labels, n_bins=6)),
            "float64",
        )

    def test_jax_a_label_out_of_range_under_jit_makes_the_error_nan():
        import jax
        import jax.numpy as jnp

        logits, labels, *_ = _jax_batches()
        state = metrics.calibration_state(jnp.asarray(logits), n_bins=6)
        bad = jnp.asarray(labels).at[3].set(7)
        state = jax.jit(metrics.update_calibration_state)(state, jnp.asarray(logits), bad)
        assert np.isnan(float(metrics.calibration_error_from_state(state)))

    @pytest.mark.parametrize("bad", [-1.0, np.nan, np.inf])
    def test_jax_a_bad_weight_under_jit_makes_the_error_nan(bad):
        # (Eagerly the same weights raise; traced, they cannot be read.)
        import jax
        import jax.numpy as jnp

        logits, labels, *_ = _jax_batches()
        weights = np.ones(len(labels))
        weights[[0, 3]] = 2.0, bad
        z, y, w = jnp.asarray(logits), jnp.asarray(labels), jnp.asarray(weights)
        state = metrics.calibration_state(z, n_bins=6)
        update = jax.jit(
            lambda s, z, y, w: metrics.update_calibration_state(s, z, y, sample_weight=w)
        )
        state = update(state, z, y, w)
        assert np.isnan(float(metrics.calibration_error_from_state(state)))
        with pytest.raises(ValueError, match=r"finite, non-negative.*Received: sample_weight="):
            metrics.update_calibration_state(state, z, y, sample_weight=w)


@pytest.mark.parametrize("scope", ["top_label", "classwise"])
def test_a_weighted_stream_is_the_stream_of_repeated_examples(backend, scope):
    scores, labels = _random_logits(21, n=60)
    weights = np.random.default_rng(21).integers(0, 4, size=60)
    weights[:2], weights[2:5] = 1, 0  # a batch of zero weights adds nothing
    repeated = np.repeat(np.arange(60), weights)
    expected = metrics.expected_calibration_error(
        scores[repeated], labels[repeated], n_bins=8, scope=scope, norm="l2", debias=True
    )
    state = metrics.calibration_state(backend.asarray(scores), n_bins=8, scope=scope)
    for batch in (slice(0, 1), slice(2, 5), slice(1, 2), slice(5, 60)):
        state = metrics.update_calibration_state(
            state,
            backend.asarray(scores[batch]),
            backend.asarray(labels[batch]),
            sample_weight=backend.asarray(weights[batch].astype(np.float64)),
        )
    # Every row of bins (one, or one per class) holds the total weight.
    totals = backend.to_numpy(state.count).reshape(-1, 8).sum(axis=1)
    assert_close(totals, np.full(len(totals), float(weights.sum())), "float64")
    actual = metrics.calibration_error_from_state(state, norm="l2", debias=True)
    assert_close(backend.to_numpy(actual), float(expected), "float64")
    with pytest.raises(ValueError, match=r"shape of `labels`.*Received: sample_weight="):
        metrics.update_calibration_state(
            state,
            backend.asarray(scores),
            backend.asarray(labels),
            sample_weight=backend.asarray(np.ones(3)),
        )
