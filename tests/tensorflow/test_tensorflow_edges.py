"""lsr.tensorflow and lsr.keras at the edges (issue 14).

* Gradients with respect to dense labels, class weights, a prior vector and a smoothing
  tensor are the same eagerly, in ``tf.function`` and under XLA, and equal the
  derivatives of the definition.
* A class axis of unknown size inside ``tf.function`` is a clear error; unknown batch
  dimensions keep working.
* A catalogue of bad input across every public entry point gives errors in lsr's
  grammar (what is wrong, what is expected, ``Received: name=value``) before computing.
* Where values cannot be read (graphs, XLA, ``model.fit``), bad values give NaN, never a
  plausible number, in the loss and in the gradient.

Expected values come from tests/reference.py (float64 NumPy written from the
definition) and its central differences, never from lsr itself.
"""

from __future__ import annotations

import array_api_strict as xs
import keras
import numpy as np
import pytest
import tensorflow as tf

import lsr.tensorflow as lsr_tf
from lsr import _core
from lsr.keras import SmoothCrossEntropy
from tests import reference

K = 5
MODES = ["eager", "graph", "xla"]
RTOL, ATOL = 1e-6, 1e-8  # central differences in float64 (step 1e-6)


@pytest.fixture(autouse=True)
def _without_op_determinism():
    """Keras refuses XLA while TensorFlow's op determinism is on (see test_keras_loss)."""
    from tensorflow.python.framework import config

    was_enabled = config.is_op_determinism_enabled()
    config.disable_op_determinism()
    yield
    if was_enabled:
        config.enable_op_determinism()


def run(mode, fn, *args):
    if mode == "eager":
        return fn(*args)
    return tf.function(fn, jit_compile=mode == "xla")(*args)


def close(actual, expected):
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=RTOL, atol=ATOL)


def _problem(seed, dense, n=4):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=1.5, size=(n, K))
    labels = rng.dirichlet(np.ones(K), size=n) if dense else rng.integers(0, K, size=n)
    weight = rng.uniform(0.5, 2.0, size=K)
    prior = rng.dirichlet(2.0 * np.ones(K))
    cotangent = rng.uniform(0.5, 1.5, size=n)  # weights the positions of "none"
    return logits, labels, weight, prior, cotangent


# --- 1. gradients of every differentiable argument, in every mode ----------------------

VARIANTS = [
    pytest.param("mean", "vector", False, id="mean-vector_prior"),
    pytest.param("none", "others", True, id="none-others-kl"),
    pytest.param("sum", "uniform", False, id="sum-uniform"),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dense", [True, False], ids=["dense", "integer"])
@pytest.mark.parametrize(("reduction", "prior_kind", "kl"), VARIANTS)
def test_gradients_of_labels_weight_prior_and_smoothing_match_the_definition(
    mode, dense, reduction, prior_kind, kl
):
    logits, labels, weight, prior, cotangent = _problem(1, dense)
    smoothing = 0.2
    with_prior = prior_kind == "vector"

    def fn(z, y, w, pi, eps):
        with tf.GradientTape() as tape:
            tape.watch([z, w, pi, eps] + ([y] if dense else []))
            loss = lsr_tf.smooth_ce(
                z,
                y,
                smoothing=eps,
                prior=pi if with_prior else prior_kind,
                weight=w,
                reduction=reduction,
                kl=kl,
            )
            total = tf.reduce_sum(loss * cotangent) if reduction == "none" else loss
        sources = {"logits": z, "weight": w, "smoothing": eps}
        sources.update({"labels": y} if dense else {})
        sources.update({"prior": pi} if with_prior else {})
        return tape.gradient(total, sources)

    grads = run(mode, fn, *map(tf.constant, (logits, labels, weight, prior, smoothing)))

    arguments = {"logits": logits, "weight": weight, "smoothing": np.array(smoothing)}
    arguments.update({"labels": labels} if dense else {})
    arguments.update({"prior": prior} if with_prior else {})

    def definition(**changed):
        a = {**arguments, **changed}
        loss = reference.smooth_ce(
            a["logits"],
            a.get("labels", labels),
            smoothing=float(a["smoothing"]),
            prior=a["prior"] if with_prior else prior_kind,
            weight=a["weight"],
            reduction=reduction,
            kl=kl,
        )
        return float(np.sum(loss * cotangent)) if reduction == "none" else float(loss)

    assert set(grads) == set(arguments)
    for name, value in arguments.items():
        expected = reference.numerical_gradient(lambda x, n=name: definition(**{n: x}), value)
        assert grads[name] is not None, name
        close(grads[name].numpy(), expected)


def test_unwatched_arguments_cost_nothing_eagerly(monkeypatch):
    """Eagerly the forward pass runs once; a second one (for the arguments' gradients)
    only when a tape watches an argument besides the logits."""
    calls = []
    forward = _core.smooth_ce

    def counted(*args, **kwargs):
        calls.append(1)
        return forward(*args, **kwargs)

    monkeypatch.setattr(_core, "smooth_ce", counted)
    logits, labels, weight, _, _ = _problem(2, dense=True)
    z, y, w = map(tf.constant, (logits, labels, weight))
    with tf.GradientTape() as tape:
        tape.watch(z)
        loss = lsr_tf.smooth_ce(z, y, weight=w)
    assert tape.gradient(loss, z) is not None
    assert len(calls) == 1
    calls.clear()
    with tf.GradientTape() as tape:
        tape.watch([z, w])
        loss = lsr_tf.smooth_ce(z, y, weight=w)
    assert all(g is not None for g in tape.gradient(loss, [z, w]))
    assert len(calls) == 2


@pytest.mark.parametrize("mode", MODES)
def test_variables_get_their_gradients_without_watching(mode):
    """Trainable soft labels and class weights (tf.Variables) are watched by any tape."""
    logits, labels, weight, _, _ = _problem(3, dense=True)
    soft = tf.Variable(labels)
    class_weight = tf.Variable(weight)

    def fn(z):
        with tf.GradientTape() as tape:
            loss = lsr_tf.smooth_ce(z, soft, weight=class_weight, smoothing=0.1)
        return tape.gradient(loss, [soft, class_weight])

    grad_labels, grad_weight = run(mode, fn, tf.constant(logits))

    def definition(y, w):
        return reference.smooth_ce(logits, y, weight=w, smoothing=0.1)

    close(
        grad_labels.numpy(), reference.numerical_gradient(lambda y: definition(y, weight), labels)
    )
    close(
        grad_weight.numpy(), reference.numerical_gradient(lambda w: definition(labels, w), weight)
    )


@pytest.mark.parametrize("mode", MODES)
def test_linear_smooth_ce_gradients_of_labels_and_weight(mode):
    rng = np.random.default_rng(4)
    hidden, kernel = rng.normal(size=(6, 3)), rng.normal(size=(3, K))
    labels, weight = rng.dirichlet(np.ones(K), size=6), rng.uniform(0.5, 2.0, size=K)

    def fn(h, k, y, w):
        with tf.GradientTape() as tape:
            tape.watch([h, y, w])
            loss = lsr_tf.linear_smooth_ce(h, k, y, weight=w, smoothing=0.1, chunk_size=4)
        return tape.gradient(loss, [h, y, w])

    grads = run(mode, fn, *map(tf.constant, (hidden, kernel, labels, weight)))

    def definition(h, y, w):
        return reference.smooth_ce(h @ kernel, y, weight=w, smoothing=0.1)

    expected = [
        reference.numerical_gradient(lambda h: definition(h, labels, weight), hidden),
        reference.numerical_gradient(lambda y: definition(hidden, y, weight), labels),
        reference.numerical_gradient(lambda w: definition(hidden, labels, w), weight),
    ]
    for actual, wanted in zip(grads, expected, strict=True):
        close(actual.numpy(), wanted)


FORWARD_MODE = [
    pytest.param(lambda z, y: lsr_tf.smooth_ce(z, y), "logits", id="smooth_ce-logits"),
    pytest.param(lambda z, y: lsr_tf.smooth_ce(z, y), "labels", id="smooth_ce-labels"),
    pytest.param(
        lambda z, y: lsr_tf.linear_smooth_ce(z, tf.eye(K, dtype=z.dtype), y),
        "labels",
        id="linear-labels",
    ),
]


@pytest.mark.parametrize("mode", ["eager", "graph"])
@pytest.mark.parametrize(("fn", "watched"), FORWARD_MODE)
def test_forward_mode_is_refused_not_answered_with_none(fn, watched, mode):
    """The gradients are reverse-mode: a ForwardAccumulator gets one NotImplementedError
    in every mode, never a JVP of None or a TensorFlow-internal error."""
    logits, labels, _, _, _ = _problem(16, dense=True)

    def jvp(z, y):
        primal = z if watched == "logits" else y
        with tf.autodiff.ForwardAccumulator(primal, tf.ones_like(primal)) as accumulator:
            loss = fn(z, y)
        return accumulator.jvp(loss)

    with pytest.raises(NotImplementedError, match="forward-mode differentiation"):
        run(mode, jvp, tf.constant(logits), tf.constant(labels))


def _distillation(student, teacher, temperature):
    """Hinton et al. 2015 from the definition: T^2 H(softmax(t/T), softmax(s/T)), mean."""
    soft = np.exp(reference.log_softmax(teacher / temperature))
    per_row = -(soft * reference.log_softmax(student / temperature)).sum(axis=-1)
    return temperature**2 * per_row.mean()


@pytest.mark.parametrize("mode", MODES)
def test_distill_loss_gradients_are_the_same_in_every_mode(mode):
    rng = np.random.default_rng(5)
    student, teacher = rng.normal(size=(4, K)), rng.normal(size=(4, K))
    temperature = 2.5

    def fn(s, t, temp):
        with tf.GradientTape() as tape:
            tape.watch([s, t, temp])
            loss = lsr_tf.distill_loss(s, t, temperature=temp)
        return tape.gradient(loss, [s, t, temp])

    grad_s, grad_t, grad_temp = run(mode, fn, *map(tf.constant, (student, teacher, temperature)))
    # The teacher is a constant of the loss (tf.stop_gradient), in every mode alike.
    assert grad_t is None
    close(
        grad_s.numpy(),
        reference.numerical_gradient(lambda s: _distillation(s, teacher, temperature), student),
    )
    close(
        grad_temp.numpy(),
        reference.numerical_gradient(
            lambda T: _distillation(student, teacher, float(T)), np.array(temperature)
        ),
    )


@pytest.mark.parametrize("mode", MODES)
def test_keras_loss_gradient_of_soft_y_true_is_the_same_in_every_mode(mode):
    """Keras passes y_true as a constant; a caller that watches soft targets gets their
    gradient in every mode. Integer y_true has none, in every mode."""
    logits, labels, _, _, _ = _problem(6, dense=True)
    logits32, labels32 = logits.astype(np.float32), labels.astype(np.float32)
    loss_fn = SmoothCrossEntropy(from_logits=True, label_smoothing=0.1)

    def fn(y_true, y_pred, ids):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch([y_true, y_pred, ids])
            soft = loss_fn(y_true, y_pred)
            sparse = loss_fn(ids, y_pred)
        return tape.gradient(soft, y_true), tape.gradient(sparse, ids)

    ids = tf.constant(np.argmax(labels, axis=-1), tf.float32)  # Keras converts y_true so
    grad_soft, grad_ids = run(mode, fn, tf.constant(labels32), tf.constant(logits32), ids)
    assert grad_ids is None
    expected = reference.numerical_gradient(
        lambda y: reference.smooth_ce(logits32, y, smoothing=0.1), labels32
    )
    np.testing.assert_allclose(grad_soft.numpy(), expected, rtol=2e-5, atol=2e-6)


# --- 2. a class axis of unknown size ---------------------------------------------------

FLOAT = tf.float32
UNKNOWN_CLASSES = [
    pytest.param(
        lambda z: lsr_tf.smooth_ce(z, tf.zeros(tf.shape(z)[:1], tf.int32)),
        [None, None],
        r"`logits` must have a known number of classes.*Received: logits.shape=\(None, None\)",
        id="smooth_ce-integer",
    ),
    pytest.param(
        lambda z: lsr_tf.smooth_ce(z, tf.nn.softmax(z)),
        [None, None],
        r"`logits` must have a known number of classes.*Received: logits.shape=\(None, None\)",
        id="smooth_ce-dense",
    ),
    pytest.param(
        lambda z: lsr_tf.smooth_ce(z, tf.zeros([2, 7], tf.int32), axis=1),
        [2, None, 7],
        r"axis 1.*Received: logits.shape=\(2, None, 7\)",
        id="smooth_ce-axis1",
    ),
    pytest.param(
        lambda z: lsr_tf.smooth_labels(z, smoothing=0.1),
        [None, None],
        r"`labels` must have a known number of classes.*Received: labels.shape=\(None, None\)",
        id="smooth_labels",
    ),
    pytest.param(
        lambda z: lsr_tf.distill_loss(z, z, temperature=2.0),
        [None, None],
        r"`student_logits` must have a known number of classes.*"
        r"Received: student_logits.shape=\(None, None\)",
        id="distill_loss",
    ),
    pytest.param(
        lambda k: lsr_tf.linear_smooth_ce(tf.ones((3, 2)), k, tf.constant([0, 1, 0])),
        [2, None],
        r"`kernel` must have a known number of classes.*Received: kernel.shape=\(2, None\)",
        id="linear_smooth_ce",
    ),
    pytest.param(
        lambda z: SmoothCrossEntropy(from_logits=True)(tf.nn.softmax(z), z),
        [None, None],
        r"`y_pred` must have a known number of classes.*Received: y_pred.shape=\(None, None\)",
        id="keras",
    ),
]


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize(("fn", "shape", "pattern"), UNKNOWN_CLASSES)
def test_an_unknown_class_axis_is_a_clear_error(fn, shape, pattern, jit):
    traced = tf.function(fn, input_signature=[tf.TensorSpec(shape, FLOAT)], jit_compile=jit)
    with pytest.raises(ValueError, match=pattern):
        traced.get_concrete_function()


UNKNOWN_RANKS = [
    pytest.param(lambda a: lsr_tf.smooth_ce(a, [0, 1]), "logits", id="smooth_ce-logits"),
    pytest.param(lambda a: lsr_tf.smooth_ce(tf.ones((2, 3)), a), "labels", id="smooth_ce-labels"),
    pytest.param(
        lambda a: lsr_tf.smooth_ce(tf.ones((2, 3)), [0, 1], weight=a),
        "weight",
        id="smooth_ce-weight",
    ),
    pytest.param(
        lambda a: lsr_tf.smooth_ce(tf.ones((2, 3)), [0, 1], prior=a), "prior", id="smooth_ce-prior"
    ),
    pytest.param(
        lambda a: lsr_tf.smooth_ce(tf.ones((2, 3)), [0, 1], where=a > 0),
        "where",
        id="smooth_ce-where",
    ),
    pytest.param(lambda a: lsr_tf.smooth_labels(a), "labels", id="smooth_labels"),
    pytest.param(
        lambda a: lsr_tf.distill_loss(a, tf.ones((2, 3)), temperature=2.0),
        "student_logits",
        id="distill-student",
    ),
    pytest.param(
        lambda a: lsr_tf.distill_loss(tf.ones((2, 3)), a, temperature=2.0),
        "teacher_logits",
        id="distill-teacher",
    ),
    pytest.param(
        lambda a: lsr_tf.linear_smooth_ce(a, tf.ones((2, 3)), [0, 1]), "hidden", id="linear-hidden"
    ),
    pytest.param(
        lambda a: lsr_tf.linear_smooth_ce(tf.ones((2, 2)), a, [0, 1]), "kernel", id="linear-kernel"
    ),
    pytest.param(
        lambda a: SmoothCrossEntropy(from_logits=True)(a, tf.ones((2, 3))), "y_true", id="keras"
    ),
]


@pytest.mark.parametrize(("fn", "name"), UNKNOWN_RANKS)
def test_an_unknown_rank_is_a_clear_error(fn, name):
    traced = tf.function(fn, input_signature=[tf.TensorSpec(None, FLOAT)])
    with pytest.raises(
        ValueError,
        match=rf"`{name}` must have a known number of dimensions.*"
        rf"Received: {name}.shape=<unknown rank>",
    ):
        traced.get_concrete_function()


class _Scale(keras.layers.Layer):
    """One trainable scalar: a model whose output keeps its input's unknown class axis."""

    def build(self, shape):
        self.scale = self.add_weight(shape=(), initializer="ones")

    def call(self, x):
        return x * self.scale


def test_keras_fit_with_an_unknown_class_axis_is_a_clear_error():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(8, K)).astype(np.float32)
    y = np.arange(8) % K

    def batches():
        for start in (0, 4):
            yield x[start : start + 4], y[start : start + 4]

    data = tf.data.Dataset.from_generator(
        batches,
        output_signature=(tf.TensorSpec([None, None], FLOAT), tf.TensorSpec([None], tf.int64)),
    )
    model = keras.Sequential([keras.Input((None,)), _Scale()])
    model.compile(optimizer="sgd", loss=SmoothCrossEntropy(from_logits=True, label_smoothing=0.1))
    with pytest.raises(ValueError, match=r"known number of classes.*y_pred.shape=\(None, None\)"):
        model.fit(data, epochs=1, verbose=0, shuffle=False)


@pytest.mark.parametrize("jit", [False, True])
def test_unknown_batch_dimensions_keep_working_with_gradients_of_soft_labels(jit):
    logits, labels, weight, _, _ = _problem(8, dense=True, n=6)

    def fn(z, y):
        with tf.GradientTape() as tape:
            tape.watch([z, y])
            loss = lsr_tf.smooth_ce(z, y, weight=tf.constant(weight), smoothing=0.1)
        return loss, tape.gradient(loss, [z, y])

    signature = [tf.TensorSpec([None, K], tf.float64)] * 2
    traced = tf.function(fn, input_signature=signature, jit_compile=jit)
    loss, (grad_z, grad_y) = traced(tf.constant(logits), tf.constant(labels))

    def definition(z, y):
        return reference.smooth_ce(z, y, weight=weight, smoothing=0.1)

    close(loss.numpy(), definition(logits, labels))
    close(grad_z.numpy(), reference.numerical_gradient(lambda z: definition(z, labels), logits))
    close(grad_y.numpy(), reference.numerical_gradient(lambda y: definition(logits, y), labels))


def test_unknown_batch_dimensions_keep_working_in_the_other_entry_points():
    rng = np.random.default_rng(9)
    z, t = rng.normal(size=(3, K)), rng.normal(size=(3, K))
    spec = tf.TensorSpec([None, K], tf.float64)
    smoothed = tf.function(lambda y: lsr_tf.smooth_labels(y, smoothing=0.1), input_signature=[spec])
    onehot = np.eye(K)[[0, 3, 1]]
    close(smoothed(tf.constant(onehot)).numpy(), 0.9 * onehot + 0.1 / K)
    ids = tf.function(
        lambda y: lsr_tf.smooth_labels(y, K, smoothing=0.1),
        input_signature=[tf.TensorSpec([None], tf.int64)],
    )
    close(ids(tf.constant([0, 3, 1], tf.int64)).numpy(), 0.9 * onehot + 0.1 / K)
    distill = tf.function(
        lambda s, te: lsr_tf.distill_loss(s, te, temperature=2.0), input_signature=[spec, spec]
    )
    close(distill(tf.constant(z), tf.constant(t)).numpy(), _distillation(z, t, 2.0))


# --- 3. a catalogue of bad input --------------------------------------------------------

Z = np.random.default_rng(10).normal(size=(3, 4)).astype(np.float32)
Y = np.array([0, 1, 3])
ONE_HOT = np.eye(4, dtype=np.float32)[Y]
H, KERNEL = np.ones((3, 2), np.float32), np.ones((2, 4), np.float32)
NO_CLASSES = r"at least one class.*Received:"  # K = 0


def _smooth_ce(**options):
    return lambda: lsr_tf.smooth_ce(Z, Y, **options)


def _linear(labels=Y, **options):
    return lambda: lsr_tf.linear_smooth_ce(H, KERNEL, labels, **options)


def _distill(**options):
    return lambda: lsr_tf.distill_loss(Z, Z, **{"temperature": 2.0, **options})


def _keras(**options):
    return lambda: SmoothCrossEntropy(**options)


def _keras_call(y_true, y_pred, **options):
    return lambda: SmoothCrossEntropy(**{"from_logits": True, **options})(y_true, y_pred)


CATALOGUE = [
    # smooth_ce: options of the wrong type
    ("smooth_ce-kl-str", _smooth_ce(kl="no"), TypeError, r"`kl`.*Received: kl='no'"),
    ("smooth_ce-kl-int", _smooth_ce(kl=1), TypeError, r"`kl`.*Received: kl=1"),
    ("smooth_ce-smoothing-str", _smooth_ce(smoothing="0.1"), TypeError, r"smoothing='0.1'"),
    ("smoothing-bool", _smooth_ce(smoothing=True), TypeError, r"not a bool.*smoothing=True"),
    (
        "smoothing-shape",
        _smooth_ce(smoothing=np.array([0.1, 0.1])),
        ValueError,
        r"one epsilon per position.*smoothing\.shape=\(2,\)",
    ),
    ("smoothing-int-tensor", _smooth_ce(smoothing=tf.constant(0)), TypeError, r"smoothing="),
    ("smoothing-range", _smooth_ce(smoothing=1.5), ValueError, r"\[0, 1\].*smoothing=1.5"),
    ("z_loss-str", _smooth_ce(z_loss="1"), TypeError, r"`z_loss`.*Received: z_loss='1'"),
    ("z_loss-bool", _smooth_ce(z_loss=True), TypeError, r"Received: z_loss=True"),
    ("axis-str", _smooth_ce(axis="1"), TypeError, r"`axis` must be an integer.*axis='1'"),
    ("axis-float", _smooth_ce(axis=1.0), TypeError, r"Received: axis=1.0"),
    ("axis-bool", _smooth_ce(axis=True), TypeError, r"Received: axis=True"),
    ("axis-range", _smooth_ce(axis=2), ValueError, r"out of range.*Received: axis=2"),
    ("ignore_index-float", _smooth_ce(ignore_index=1.0), TypeError, r"ignore_index=1.0"),
    ("ignore_index-bool", _smooth_ce(ignore_index=True), TypeError, r"ignore_index=True"),
    ("reduction-none", _smooth_ce(reduction=None), ValueError, r"Received: reduction=None"),
    ("reduction-keras", _smooth_ce(reduction="sum_over_batch_size"), ValueError, "reduction="),
    ("weight-str", _smooth_ce(weight="abc"), TypeError, r"`weight`.*Received: weight='abc'"),
    ("weight-int", _smooth_ce(weight=[1, 2, 3, 4]), TypeError, r"floating dtype.*weight="),
    ("weight-bool", _smooth_ce(weight=[True] * 4), TypeError, r"floating dtype.*weight="),
    ("weight-shape", _smooth_ce(weight=[1.0, 2.0]), ValueError, r"shape \(4,\).*weight="),
    ("prior-name", _smooth_ce(prior="Uniform"), ValueError, r"Received: prior='Uniform'"),
    ("prior-bool", _smooth_ce(prior=True), ValueError, r"shape \(4,\).*Received: prior="),
    ("prior-number", _smooth_ce(prior=0.25), ValueError, r"shape \(4,\).*Received: prior="),
    ("prior-sum", _smooth_ce(prior=[0.5] * 4), ValueError, r"sum to 1"),
    ("prior-negative", _smooth_ce(prior=[-0.5, 0.5, 0.5, 0.5]), ValueError, r"non-negative"),
    ("where-int", _smooth_ce(where=[1, 0, 1]), ValueError, r"boolean mask.*where="),
    ("where-shape", _smooth_ce(where=[True, False]), ValueError, r"boolean mask.*where="),
    ("where-str", _smooth_ce(where="all"), TypeError, r"Received: where='all'"),
    # smooth_ce: arrays
    ("logits-none", lambda: lsr_tf.smooth_ce(None, Y), TypeError, r"Received: logits=None"),
    ("logits-str", lambda: lsr_tf.smooth_ce("abc", Y), TypeError, r"Received: logits='abc'"),
    ("logits-dict", lambda: lsr_tf.smooth_ce({"a": 1}, Y), TypeError, r"Received: logits="),
    ("logits-int", lambda: lsr_tf.smooth_ce(Y[None], [0]), TypeError, r"floating.*logits="),
    ("logits-0d", lambda: lsr_tf.smooth_ce(1.0, 0), ValueError, r"one dimension.*logits="),
    ("logits-ragged", lambda: lsr_tf.smooth_ce([[1.0, 2.0], [1.0]], [0, 0]), TypeError, "logits="),
    ("labels-bool", lambda: lsr_tf.smooth_ce(Z, Y > 0), TypeError, r"integer class ids.*labels="),
    ("labels-str", lambda: lsr_tf.smooth_ce(Z, ["a", "b", "c"]), TypeError, r"labels="),
    ("labels-shape", lambda: lsr_tf.smooth_ce(Z, Y[:2]), ValueError, r"shape.*Received: labels="),
    ("labels-dense-shape", lambda: lsr_tf.smooth_ce(Z, ONE_HOT[:, :3]), ValueError, "labels="),
    ("labels-range", lambda: lsr_tf.smooth_ce(Z, [0, 1, 4]), ValueError, r"\[0, 4\).*min=4"),
    ("labels-strict", lambda: lsr_tf.smooth_ce(Z, xs.asarray(Y)), TypeError, r"other libraries"),
    ("logits-strict", lambda: lsr_tf.smooth_ce(xs.asarray(Z), Y), TypeError, r"other libraries"),
    ("weight-strict", _smooth_ce(weight=xs.ones(4)), TypeError, r"Received: weight="),
    ("prior-strict", _smooth_ce(prior=xs.full(4, 0.25)), TypeError, r"Received: prior="),
    ("dense-swapped", lambda: lsr_tf.smooth_ce(ONE_HOT, Z), ValueError, r"Received: labels"),
    ("dense-unnormalized", lambda: lsr_tf.smooth_ce(Z, 2 * ONE_HOT), ValueError, r"labels"),
    ("no-classes", lambda: lsr_tf.smooth_ce(np.zeros((3, 0)), Y), ValueError, NO_CLASSES),
    (
        "no-classes-dense",
        lambda: lsr_tf.smooth_ce(np.zeros((3, 0)), np.zeros((3, 0))),
        ValueError,
        NO_CLASSES,
    ),
    # smooth_labels
    ("sl-dtype-int", lambda: lsr_tf.smooth_labels(Y, 4, dtype=np.int32), TypeError, r"dtype="),
    ("sl-dtype-junk", lambda: lsr_tf.smooth_labels(Y, 4, dtype="junk"), TypeError, r"dtype='junk'"),
    ("sl-classes-str", lambda: lsr_tf.smooth_labels(Y, "4"), TypeError, r"num_classes='4'"),
    ("sl-classes-bool", lambda: lsr_tf.smooth_labels(Y, True), TypeError, r"num_classes=True"),
    ("sl-classes-0", lambda: lsr_tf.smooth_labels(Y, 0), ValueError, r"num_classes=0"),
    ("sl-classes-none", lambda: lsr_tf.smooth_labels(Y), ValueError, r"num_classes=None"),
    ("sl-classes-dense", lambda: lsr_tf.smooth_labels(ONE_HOT, 3), ValueError, "num_classes=3"),
    ("sl-smoothing", lambda: lsr_tf.smooth_labels(Y, 4, smoothing="x"), TypeError, "smoothing='x'"),
    ("sl-prior", lambda: lsr_tf.smooth_labels(Y, 4, prior="flat"), ValueError, "prior='flat'"),
    ("sl-range", lambda: lsr_tf.smooth_labels([0, 5], 4), ValueError, r"min=5"),
    ("sl-0d-dense", lambda: lsr_tf.smooth_labels(1.0), ValueError, r"class axis.*labels="),
    ("sl-str", lambda: lsr_tf.smooth_labels("ab", 3), TypeError, r"Received: labels='ab'"),
    ("sl-strict", lambda: lsr_tf.smooth_labels(xs.asarray(Y), 4), TypeError, "other libraries"),
    ("sl-no-classes", lambda: lsr_tf.smooth_labels(np.zeros((3, 0))), ValueError, NO_CLASSES),
    # distill_loss
    ("d-kl", _distill(kl="no"), TypeError, r"`kl`.*Received: kl='no'"),
    ("d-temperature-str", _distill(temperature="2"), TypeError, r"temperature='2'"),
    ("d-temperature-bool", _distill(temperature=True), TypeError, r"temperature=True"),
    ("d-temperature-0", _distill(temperature=0), ValueError, r"temperature=0"),
    ("d-temperature-1d", _distill(temperature=np.ones(1)), TypeError, r"temperature="),
    ("d-reduction", _distill(reduction="avg"), ValueError, r"reduction='avg'"),
    ("d-where", _distill(where=[1, 0, 1]), ValueError, r"boolean mask.*where="),
    ("d-axis", _distill(axis="0"), TypeError, r"axis='0'"),
    (
        "d-teacher-shape",
        lambda: lsr_tf.distill_loss(Z, Z[:2], temperature=2.0),
        ValueError,
        r"student's shape.*teacher_logits=",
    ),
    (
        "d-teacher-strict",
        lambda: lsr_tf.distill_loss(Z, xs.asarray(Z), temperature=2.0),
        TypeError,
        r"other libraries.*teacher_logits=",
    ),
    (
        "d-int",
        lambda: lsr_tf.distill_loss(Y[None], Y[None], temperature=2.0),
        TypeError,
        r"floating.*student_logits=",
    ),
    (
        "d-no-classes",
        lambda: lsr_tf.distill_loss(np.zeros((3, 0)), np.zeros((3, 0)), temperature=2.0),
        ValueError,
        NO_CLASSES,
    ),
    # linear_smooth_ce
    ("lin-kl", _linear(kl="no"), TypeError, r"`kl`.*Received: kl='no'"),
    ("lin-chunk-str", _linear(chunk_size="2"), ValueError, r"chunk_size='2'"),
    ("lin-chunk-bool", _linear(chunk_size=True), ValueError, r"chunk_size=True"),
    ("lin-chunk-0", _linear(chunk_size=0), ValueError, r"chunk_size=0"),
    ("lin-labels-0d", _linear(labels=np.int32(1)), ValueError, r"shape, \(3,\).*shape=\(\)"),
    ("lin-labels-n", _linear(labels=Y[:2]), ValueError, r"leading shape.*shape=\(2,\)"),
    ("lin-labels-dense", _linear(labels=ONE_HOT[:, :3]), ValueError, r"\(3, 4\).*labels="),
    ("lin-where", _linear(where=[True]), ValueError, r"leading shape.*where="),
    ("lin-weight-str", _linear(weight="w"), TypeError, r"Received: weight='w'"),
    ("lin-smoothing", _linear(smoothing=2.0), ValueError, r"smoothing=2.0"),
    (
        "lin-kernel-shape",
        lambda: lsr_tf.linear_smooth_ce(H, np.ones((3, 4), np.float32), Y),
        ValueError,
        r"\(d, K\).*kernel=",
    ),
    (
        "lin-kernel-dtype",
        lambda: lsr_tf.linear_smooth_ce(H, KERNEL.astype(np.float64), Y),
        TypeError,
        r"dtype.*kernel=",
    ),
    (
        "lin-bias-shape",
        lambda: lsr_tf.linear_smooth_ce(H, KERNEL, Y, bias=np.ones(3, np.float32)),
        ValueError,
        r"\(4,\).*bias=",
    ),
    (
        "lin-kernel-strict",
        lambda: lsr_tf.linear_smooth_ce(H, xs.ones((2, 4)), Y),
        TypeError,
        r"other libraries.*kernel=",
    ),
    (
        "lin-empty",
        lambda: lsr_tf.linear_smooth_ce(np.ones((0, 2), np.float32), KERNEL, Y[:0]),
        ValueError,
        r"at least one row.*hidden=",
    ),
    (
        "lin-no-classes",
        lambda: lsr_tf.linear_smooth_ce(H, np.ones((2, 0), np.float32), Y),
        ValueError,
        NO_CLASSES,
    ),
    # lsr.keras.SmoothCrossEntropy: the constructor checks its own arguments
    ("k-from_logits", _keras(from_logits="yes"), TypeError, r"from_logits='yes'"),
    ("k-from_logits-int", _keras(from_logits=1), TypeError, r"from_logits=1"),
    ("k-smoothing-str", _keras(label_smoothing="0.1"), TypeError, r"label_smoothing='0.1'"),
    ("k-smoothing-bool", _keras(label_smoothing=True), TypeError, r"label_smoothing=True"),
    ("k-smoothing-none", _keras(label_smoothing=None), TypeError, r"label_smoothing=None"),
    ("k-smoothing-range", _keras(label_smoothing=1.5), ValueError, r"label_smoothing=1.5"),
    ("k-axis-str", _keras(axis="1"), TypeError, r"axis='1'"),
    ("k-axis-bool", _keras(axis=True), TypeError, r"axis=True"),
    ("k-reduction", _keras(reduction="avg"), ValueError, r"reduction=avg"),
    ("k-name", _keras(name=3), TypeError, r"`name`.*Received: name=3"),
    ("k-dtype-int", _keras(dtype="int32"), TypeError, r"floating.*Received: dtype='int32'"),
    ("k-prior-name", _keras(prior="flat"), ValueError, r"prior='flat'"),
    ("k-prior-bool", _keras(prior=[True, False]), TypeError, r"prior=\[True, False\]"),
    ("k-prior-str", _keras(prior=["a", "b"]), TypeError, r"prior=\['a', 'b'\]"),
    ("k-prior-2d", _keras(prior=[[0.5, 0.5]]), TypeError, r"1-d.*prior="),
    ("k-prior-empty", _keras(prior=[]), TypeError, r"prior=\[\]"),
    ("k-prior-sum", _keras(prior=[0.5, 0.6]), ValueError, r"sum to 1"),
    ("k-prior-nan", _keras(prior=[np.nan, 1.0]), ValueError, r"finite"),
    ("k-ignore_class-float", _keras(ignore_class=1.0), TypeError, r"ignore_class=1.0"),
    ("k-ignore_class-bool", _keras(ignore_class=True), TypeError, r"ignore_class=True"),
    # lsr.keras.SmoothCrossEntropy: the call
    ("k-y_true-str", _keras_call("a", Z), TypeError, r"Received: y_true='a'"),
    ("k-y_pred-none", _keras_call(Y, None), TypeError, r"Received: y_pred=None"),
    ("k-y_pred-0d", _keras_call(np.float32(1), np.float32(1)), ValueError, r"one dimension"),
    ("k-shape", _keras_call(ONE_HOT[:, :3], Z), ValueError, r"\(3, 4\).*labels="),
    ("k-range", _keras_call(np.array([0, 1, 4]), Z), ValueError, r"\[0, 4\).*min=4"),
    ("k-swapped", _keras_call(Z, ONE_HOT), ValueError, r"labels"),
    ("k-ignore-dense", _keras_call(ONE_HOT, Z, ignore_class=0), ValueError, r"ignore_class=0"),
    (
        "k-no-classes",
        _keras_call(np.zeros((3, 0), np.float32), np.zeros((3, 0), np.float32)),
        ValueError,
        NO_CLASSES,
    ),
]


@pytest.mark.parametrize(
    ("call", "error", "pattern"),
    [pytest.param(call, error, pattern, id=name) for name, call, error, pattern in CATALOGUE],
)
def test_bad_input_is_refused_in_lsrs_grammar(call, error, pattern):
    with pytest.raises(error, match=pattern) as raised:
        call()
    assert "Received:" in str(raised.value)
    assert type(raised.value) is error  # not a subclass from deep inside a library


def test_the_keras_constructor_refuses_before_any_call():
    """Arguments are checked when the loss is made, not at the first batch of a fit."""
    with pytest.raises(TypeError, match="label_smoothing"):
        SmoothCrossEntropy(label_smoothing="0.1")
    loss = SmoothCrossEntropy(from_logits=True, label_smoothing=0.1, prior=[0.25] * 4)
    assert loss.get_config()["prior"] == [0.25] * 4


@pytest.mark.parametrize("mode", MODES)
def test_empty_batches_give_zero_with_an_empty_gradient(mode):
    """No position kept: the mean is 0 (lsr's documented rule), not NaN or an error."""

    def fn(z, y):
        with tf.GradientTape() as tape:
            tape.watch(z)
            loss = lsr_tf.smooth_ce(z, y, smoothing=0.1)
        return loss, tape.gradient(loss, z)

    loss, grad = run(mode, fn, tf.zeros((0, K)), tf.zeros((0,), tf.int32))
    assert float(loss) == 0.0 and grad.shape == (0, K)


# --- 4. values that cannot be checked give NaN ------------------------------------------


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize("bad", [K, -1, 2**31 - 1])
def test_out_of_range_labels_poison_the_loss_and_the_gradient(jit, bad):
    rng = np.random.default_rng(12)
    x, kernel = rng.normal(size=(4, 3)), rng.normal(size=(3, K))

    def fn(x, w, y):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(w)
            z = x @ w
            loss = lsr_tf.smooth_ce(z, y, smoothing=0.1)
        return loss, tape.gradient(loss, z), tape.gradient(loss, w)

    labels = tf.constant([0, bad, 2, 3], tf.int32)
    loss, grad_z, grad_w = tf.function(fn, jit_compile=jit)(
        tf.constant(x), tf.constant(kernel), labels
    )
    assert np.isnan(loss.numpy())
    assert np.isnan(grad_z.numpy()[1]).all()
    # What an optimizer would apply: every entry of the kernel's gradient is poisoned.
    assert np.isnan(grad_w.numpy()).all()


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"smoothing": 1.5}, id="smoothing-1.5"),
        pytest.param({"smoothing": -0.2}, id="smoothing--0.2"),
        pytest.param({"prior": [0.5, 0.5, 0.5, 0.5, 0.5]}, id="prior-sum"),
        pytest.param({"prior": [-0.2, 0.3, 0.3, 0.3, 0.3]}, id="prior-negative"),
        pytest.param({"prior": [np.nan, 0.25, 0.25, 0.25, 0.25]}, id="prior-nan"),
    ],
)
def test_out_of_range_options_traced_poison_the_loss_and_the_gradient(jit, options):
    """``smoothing``/``prior`` given as tensors inside tf.function cannot be read: a bad
    value must give NaN, never a plausible number."""
    rng = np.random.default_rng(13)
    x, kernel = rng.normal(size=(4, 3)), rng.normal(size=(3, K))

    def fn(x, w, option):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(w)
            z = x @ w
            loss = lsr_tf.smooth_ce(z, tf.constant([0, 1, 2, 3]), **{name: option})
        return loss, tape.gradient(loss, w)

    ((name, value),) = options.items()
    loss, grad_w = tf.function(fn, jit_compile=jit)(
        tf.constant(x), tf.constant(kernel), tf.constant(value, tf.float64)
    )
    assert np.isnan(loss.numpy())
    assert np.isnan(grad_w.numpy()).all()


@pytest.mark.parametrize("jit_compile", [False, True])
def test_keras_fit_with_an_out_of_range_label_reports_nan(jit_compile):
    rng = np.random.default_rng(14)
    x = rng.normal(size=(8, 3)).astype(np.float32)
    labels = np.arange(8) % K
    labels[5] = K  # one bad label in the second batch
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(K)])
    model.compile(
        optimizer="sgd",
        loss=SmoothCrossEntropy(from_logits=True, label_smoothing=0.1),
        jit_compile=jit_compile,
    )
    history = model.fit(x, labels, batch_size=4, epochs=1, shuffle=False, verbose=0)
    assert np.isnan(history.history["loss"][0])
    # The step with the bad label poisoned the weights: the model's outputs are NaN.
    assert np.isnan(model.predict(x, verbose=0)).all()


@pytest.mark.parametrize("jit", [False, True])
def test_out_of_range_labels_poison_the_other_entry_points(jit):
    """linear_smooth_ce (loss and every parameter gradient) and smooth_labels (the row)."""
    rng = np.random.default_rng(15)
    hidden, kernel = rng.normal(size=(4, 3)), rng.normal(size=(3, K))

    def linear(h, k, y):
        with tf.GradientTape() as tape:
            tape.watch([h, k])
            loss = lsr_tf.linear_smooth_ce(h, k, y, chunk_size=2)
        return loss, tape.gradient(loss, [h, k])

    labels = tf.constant([0, K + 2, 2, 3])
    loss, (grad_h, grad_k) = tf.function(linear, jit_compile=jit)(
        tf.constant(hidden), tf.constant(kernel), labels
    )
    assert np.isnan(loss.numpy()) and np.isnan(grad_k.numpy()).all()
    assert np.isnan(grad_h.numpy()[1]).all()

    smoothed = tf.function(lambda y: lsr_tf.smooth_labels(y, K), jit_compile=jit)(labels).numpy()
    assert np.isnan(smoothed[1]).all()
    np.testing.assert_allclose(smoothed[[0, 2, 3]], 0.9 * np.eye(K)[[0, 2, 3]] + 0.1 / K, rtol=1e-6)
