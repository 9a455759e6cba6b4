"""TensorFlow adapter: lsr's one core on tf.Tensors, with a custom gradient.

* ``smooth_ce``: the label-smoothed cross-entropy with the generic ``lsr.smooth_ce``
  keywords, eager, inside ``tf.function`` and under ``tf.function(jit_compile=True)``.
* ``smooth_labels``: dense smoothed targets, returned as a tf.Tensor.
* ``distill_loss`` and ``linear_smooth_ce``: the generic functions' TensorFlow forms.

All accept tf.Tensors, tf.Variables, NumPy arrays and (nested) Python lists, and never
modify their input. Validation is ``lsr._checks`` (the errors every backend raises); the
arithmetic is ``lsr._core`` through lsr's TensorFlow namespace (``lsr._tf_namespace``),
since array-api-compat has none for TensorFlow.

The gradient with respect to the logits is registered with ``tf.custom_gradient``. Inside
a ``tf.function`` (with or without XLA) the loss and its gradient come from one pass over
the logits (``lsr._core.loss_and_grad``: one exp serves both; a graph that asks for no
gradient never runs its ops); eagerly the backward pass computes it only when a tape asks,
from the logits and one logsumexp per position (``lsr._core.smooth_ce_grad``). Either way
no logits-sized tensor besides the logits is kept for the backward pass, where autodiff
through the core would keep several (``benchmarks/`` has the measurements).

Dense (soft) labels, ``weight``, an array ``prior`` and an array ``smoothing`` get
gradients too, the same eagerly, in ``tf.function`` and under XLA: the backward pass
differentiates the core's forward pass in just those arguments (TensorFlow autodiff of
``lsr._core.smooth_ce`` with the logits held constant). That costs one more forward pass,
paid only when such a gradient is computed: eagerly only when a tape watches one of them
(a trainable tf.Variable is watched by default), in graphs only when the gradient is
used (unused ops are pruned). Integer labels have no gradient. ``distill_loss`` follows
the same rule (the teacher's logits pass through ``tf.stop_gradient``: None in every
mode; a tensor ``temperature`` gets its gradient), and so does ``linear_smooth_ce``.
Gradients are first order and reverse-mode: asking for a second derivative, or watching
an input with a ``tf.autodiff.ForwardAccumulator``, raises ``NotImplementedError`` (the
closed-form gradient would miss the logsumexp's dependence on the logits).

Inside ``tf.function`` values are abstract, so integer labels out of range cannot raise:
their loss (and any reduction over it) is NaN, and so is their gradient. Shapes with
unknown dimensions (a batch dimension of None, as in ``keras.Model.fit``) are supported
when at most one dimension of the logits is unknown; the class axis must have a known
size (a ValueError says so when the function is traced), and so must the rank.

Example:
    >>> import tensorflow as tf
    >>> import lsr.tensorflow
    >>> logits = tf.constant([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
    >>> loss = lsr.tensorflow.smooth_ce(logits, tf.constant([0, 1]), smoothing=0.1)
    >>> print(f"{float(loss):.4f}")
    0.5047
"""

from __future__ import annotations

import contextlib
import numbers
from typing import Any

import numpy as np
import tensorflow as tf

import lsr
from lsr import _core, _linear, _tf_namespace
from lsr._checks import prepare_linear_smooth_ce, prepare_smooth_ce
from lsr._validation import fail_type, fail_value, normalize_axis

__all__ = ["distill_loss", "linear_smooth_ce", "smooth_ce", "smooth_labels"]

_xp = _tf_namespace.namespace

try:
    # TensorFlow's tape controls have no public form: a tape-wide "stop recording" and
    # "may any tape or forward accumulator differentiate with respect to these tensors"
    # (what tf.function itself asks). Without them (a TensorFlow that moved them), the
    # adapter stays correct: it records what it need not, and computes every gradient.
    from tensorflow.python.eager import forwardprop_util as _forwardprop_util
    from tensorflow.python.eager import record as _record
    from tensorflow.python.ops import gradients_util as _gradients_util

    _stop_recording = _record.stop_recording
    _possible_gradient_types = _gradients_util.PossibleTapeGradientTypes
    _watched_by_a_tape = _record.should_record_backprop
    # A tape nested in a backward pass sees nothing while a forward accumulator records,
    # unless the accumulators' state is set aside (as TensorFlow's own JVP helper does).
    _nested_tape_context = _forwardprop_util.push_forwardprop_state
except (ImportError, AttributeError):  # pragma: no cover - depends on the TF version
    _stop_recording = contextlib.nullcontext
    _possible_gradient_types = None
    _watched_by_a_tape = None
    _nested_tape_context = contextlib.nullcontext


def _as_tensor(name: str, value: Any) -> Any:
    """A tf.Tensor from a tensor, variable, NumPy array or Python (nested) list, with a
    known number of dimensions (every check after this one reads the shape)."""
    if isinstance(value, tf.Variable):
        # Reading the variable keeps it on the tape, so its gradient still arrives.
        tensor = tf.convert_to_tensor(value)
    elif isinstance(value, tf.Tensor):
        tensor = value
    elif isinstance(value, (np.ndarray, np.generic, numbers.Number, list, tuple)):
        try:
            tensor = tf.convert_to_tensor(value)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"`{name}` could not be converted to a tf.Tensor: {error} "
                f"Received: {name}={value!r}"
            ) from error
    else:
        fail_type(
            f"`{name}` must be a tf.Tensor, a NumPy array or a list of numbers; convert "
            "arrays of other libraries first.",
            name,
            value,
        )
    if tensor.shape.rank is None:
        raise ValueError(
            f"`{name}` must have a known number of dimensions (inside tf.function, give "
            f"the function an input_signature with a rank). Received: {name}.shape=<unknown rank>"
        )
    return tensor


def _as_optional_tensor(name: str, value: Any) -> Any:
    return None if value is None else _as_tensor(name, value)


def _as_prior(value: Any) -> Any:
    """A prior's name as it is; anything else is an array of K probabilities."""
    return value if value is None or isinstance(value, str) else _as_tensor("prior", value)


def _as_option(name: str, value: Any) -> Any:
    """``smoothing`` and ``temperature``: bools, strings and Python numbers as they are
    (the checks of ``lsr._checks`` name them), arrays as tensors."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, np.generic) and isinstance(value, numbers.Real):
        return value.item()  # A NumPy scalar is a number here, not a NumPy array.
    if isinstance(value, numbers.Real):
        return value
    return _as_tensor(name, value)


def _check_class_axis(name: str, tensor: Any, axis: Any) -> None:
    """Refuse a class axis of unknown size (inside ``tf.function``): K sets the shapes of
    everything the core builds. A bad ``axis`` is left to the checks that name it."""
    rank = tensor.shape.rank
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        return
    if -rank <= axis < rank and tensor.shape[axis] is None:
        fail_value(
            f"`{name}` must have a known number of classes (the size of its axis {axis}); "
            "inside tf.function, give the input_signature that size (other dimensions may "
            "be None).",
            f"{name}.shape",
            tuple(tensor.shape),
        )


def _all_positions(logits: Any, axis: Any) -> Any:
    """An all-true ``where`` mask of the logits' dynamic shape without the class axis.

    The core counts the positions of a mean from the static shape; with an unknown
    dimension (a batch of None, as in ``keras.Model.fit``) this mask gives it the count
    as a tensor instead. ``axis``: valid for the logits (checked before)."""
    axis = normalize_axis(axis, logits.shape.rank)
    shape = tf.shape(logits)
    return tf.ones(tf.concat([shape[:axis], shape[axis + 1 :]], axis=0), dtype=tf.bool)


@tf.custom_gradient
def _first_order_only(grad: Any) -> Any:
    def second_order(upstream: Any) -> Any:
        raise NotImplementedError(
            "lsr.tensorflow.smooth_ce registers a first-order custom gradient; its gradient "
            "cannot be differentiated again. Received: a request for a second derivative"
        )

    return tf.identity(grad), second_order


# The arguments besides the logits that a gradient may be asked for, when they are
# floating tensors: dense labels and the array-valued options.
_OPTIONS_WITH_GRADIENTS = ("weight", "prior", "smoothing")


def _may_need_gradient(tensor: Any) -> bool:
    """Whether a gradient with respect to ``tensor`` can be asked for.

    Inside a graph it always can (``tf.gradients``, or a tape outside the function), and
    the ops of a gradient nobody asks for are pruned from the graph. Eagerly only a tape
    (or a ``tf.autodiff.ForwardAccumulator``) that watches ``tensor``, or the variable it
    was read from, can ask, and the backward pass then spends nothing on the others.
    """
    if not tf.executing_eagerly() or _possible_gradient_types is None:
        return True
    return bool(_possible_gradient_types([tensor]))


def _refuse_forward_mode(*values: Any) -> None:
    """Refuse a ``tf.autodiff.ForwardAccumulator`` that watches one of the tensors among
    ``values`` (and no tape does).

    The registered gradients are reverse-mode and first order. Without this check an
    accumulator got, depending on the mode, a JVP of None for soft labels, an error about
    second derivatives, or a TensorFlow-internal TypeError from the fused linear loop.
    """
    tensors = [value for value in values if isinstance(value, tf.Tensor)]
    if _watched_by_a_tape is None:
        return
    if _possible_gradient_types(tensors) and not _watched_by_a_tape(tensors):
        raise NotImplementedError(
            "lsr.tensorflow registers reverse-mode (first-order) gradients only; forward-"
            "mode differentiation is not supported: use tf.GradientTape. Received: a "
            "tf.autodiff.ForwardAccumulator watching an input"
        )


def _differentiable_arguments(labels: Any, spec: _core.Spec) -> dict[str, Any]:
    """Name -> floating tensor, for the arguments besides the logits that get gradients."""
    candidates = {"labels": labels if spec.dense else None}
    candidates.update({name: getattr(spec, name) for name in _OPTIONS_WITH_GRADIENTS})
    return {
        name: value
        for name, value in candidates.items()
        if isinstance(value, tf.Tensor) and value.dtype.is_floating and _may_need_gradient(value)
    }


def _with_arguments(
    labels: Any, spec: _core.Spec, names: tuple[str, ...], values: tuple[Any, ...]
) -> tuple[Any, _core.Spec]:
    """``labels`` and ``spec`` with the named arguments replaced by ``values``."""
    replaced = dict(zip(names, values, strict=True))
    return replaced.pop("labels", labels), spec.replace(**replaced)


def _argument_gradients(
    forward: Any,
    labels: Any,
    spec: _core.Spec,
    names: tuple[str, ...],
    values: Any,
    upstream: Any,
) -> list[Any]:
    """Gradients of the loss with respect to the named arguments, times ``upstream``.

    Autodiff of the core's own forward pass (``forward(labels, spec)``) in just these
    arguments, with the logits held constant: the loss is not restated, and the cost
    (one more forward pass) is paid only when these gradients are computed.
    """
    if not names:
        return []
    with _nested_tape_context():
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(values)
            loss = forward(*_with_arguments(labels, spec, names, values))
        cotangent = tf.cast(upstream, loss.dtype)
        grads = tape.gradient(loss, list(values), output_gradients=cotangent)
    return [None if g is None else _first_order_only(g) for g in grads]


def _loss_given(logits: Any) -> Any:
    """``(labels, spec) -> reduced loss``: the core's forward pass on fixed logits."""
    return lambda labels, spec: _core.smooth_ce(logits, labels, spec, xp=_xp)[0]


def _smooth_ce_with_gradient(logits: Any, labels: Any, spec: _core.Spec) -> Any:
    """``_core.smooth_ce`` forward, ``_core.smooth_ce_grad`` backward for the logits.

    Dense labels and array-valued ``weight``, ``prior`` and ``smoothing`` are inputs of
    the custom gradient too, so that their gradients are the same eagerly and in graphs.
    """
    _refuse_forward_mode(logits, labels, *(getattr(spec, n) for n in _OPTIONS_WITH_GRADIENTS))
    arguments = _differentiable_arguments(labels, spec)
    names = tuple(arguments)
    if not tf.executing_eagerly():
        return _fused_smooth_ce(logits, labels, spec, names, tuple(arguments.values()))
    logits_need_gradient = _may_need_gradient(logits)

    @tf.custom_gradient
    def forward(z, *values):
        y, call = _with_arguments(labels, spec, names, values)
        # What the tape would record here is never used (the custom gradient replaces
        # it) but would keep logits-sized temporaries alive until the tape is freed.
        with _stop_recording():
            loss, lse, denominator = _core.smooth_ce(z, y, call, xp=_xp)

        def backward(upstream):
            grad = None
            if logits_need_gradient:
                cotangent = tf.cast(upstream, lse.dtype)
                grad = _first_order_only(
                    _core.smooth_ce_grad(z, y, lse, denominator, cotangent, call, xp=_xp)
                )
            return [
                grad,
                *_argument_gradients(_loss_given(z), labels, spec, names, values, upstream),
            ]

        return loss, backward

    return forward(logits, *arguments.values())


def _fused_smooth_ce(
    logits: Any, labels: Any, spec: _core.Spec, names: tuple[str, ...], values: tuple
) -> Any:
    """In a graph: the loss and its gradient from one pass (``_core.loss_and_grad``).

    One exp of the logits serves both (XLA's CPU reductions do not vectorize an exp fused
    into them, so a separate logsumexp and backward exp cost twice); a graph that asks
    for no gradient never runs the gradient's ops. Eagerly, ``_smooth_ce_with_gradient``
    computes the gradient only when a tape asks for it.
    """
    axis, reduction = spec.axis, spec.reduction

    @tf.custom_gradient
    def forward(z, *values):
        y, call = _with_arguments(labels, spec, names, values)
        with _stop_recording():
            loss, grad = _core.reduced_loss_and_grad(z, y, call, xp=_xp)

        def backward(upstream):
            cotangent = tf.cast(upstream, grad.dtype)
            if reduction == "none":
                cotangent = tf.expand_dims(cotangent, axis)
            return [
                _first_order_only(grad * cotangent),
                *_argument_gradients(_loss_given(z), labels, spec, names, values, upstream),
            ]

        return loss, backward

    return forward(logits, *values)


# Autograph would rewrite Python branches on tensors into tf.cond; lsr's code has none by
# design, and leaving it unconverted keeps such a bug an error instead of a silent change.
@tf.autograph.experimental.do_not_convert
def smooth_ce(
    logits: Any,
    labels: Any,
    *,
    smoothing: Any = 0.1,
    prior: Any = "uniform",
    axis: int = -1,
    ignore_index: int | None = None,
    weight: Any = None,
    where: Any = None,
    reduction: str = "mean",
    kl: bool = False,
    z_loss: float = 0.0,
) -> Any:
    r"""Label-smoothed softmax cross-entropy ``H(q', softmax(logits))`` on tf.Tensors.

    The semantics and keywords of ``lsr.smooth_ce`` (see there for every option):
    ``q' = (1 - smoothing) q + smoothing u`` with ``u`` named by ``prior``, computed in
    closed form for integer labels (no one-hot tensor), with a custom gradient.

    Args:
        logits: floating scores, shape ``(..., K, ...)`` with the K classes on ``axis``.
            float16/bfloat16 are computed (and returned) in float32.
        labels: integer class ids of shape ``logits.shape`` without ``axis``, or dense
            floating targets of the logits' shape.
        smoothing: epsilon in [0, 1], a Python float or a 0-d tensor.
        prior: ``"uniform"`` (``u_k = 1/K``, as Keras' ``label_smoothing``), ``"others"``
            (epsilon spread over the K - 1 other classes), or a (K,) distribution.
        axis: the class axis.
        ignore_index: integer labels equal to it get loss 0 and gradient 0 and are left
            out of the mean.
        weight: per-class weights of shape (K,) (PyTorch's semantics).
        where: boolean mask of the positions to keep (shape of the integer labels).
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        kl: return ``KL(q' || p)`` (minimum 0) instead of the cross-entropy.
        z_loss: coefficient of ``z_loss * logsumexp(logits)**2`` per position.

    Returns:
        A tf.Tensor: 0-d for "mean" and "sum", the positions' shape for "none".

    Raises:
        TypeError, ValueError: as ``lsr.smooth_ce``; value checks (labels in range,
            smoothing in [0, 1]) run eagerly only. Inside ``tf.function`` an
            out-of-range label gives NaN. A ValueError also when, inside
            ``tf.function``, the rank or the class axis' size is unknown.

    Example:
        >>> import numpy as np
        >>> import lsr.tensorflow
        >>> loss = lsr.tensorflow.smooth_ce(
        ...     np.array([[100.0, -100.0, -100.0]]), np.array([0]), smoothing=0.1
        ... )
        >>> print(f"{float(loss):.4f}")  # Keras: 400 * 0.1 / 3
        13.3333

    References:
        Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer Vision".
    """
    logits = _as_tensor("logits", logits)
    labels = _as_tensor("labels", labels)
    _check_class_axis("logits", logits, axis)
    _, logits, labels, spec = prepare_smooth_ce(
        logits,
        labels,
        smoothing=_as_option("smoothing", smoothing),
        prior=_as_prior(prior),
        axis=axis,
        ignore_index=ignore_index,
        weight=_as_optional_tensor("weight", weight),
        where=_as_optional_tensor("where", where),
        reduction=reduction,
        kl=kl,
        z_loss=z_loss,
    )
    if not logits.shape.is_fully_defined() and spec.where is None:
        spec = spec.replace(where=_all_positions(logits, spec.axis))
    return _smooth_ce_with_gradient(logits, labels, spec)


@tf.autograph.experimental.do_not_convert
def smooth_labels(
    labels: Any,
    num_classes: int | None = None,
    *,
    smoothing: Any = 0.1,
    prior: Any = "uniform",
    axis: int = -1,
    dtype: Any = None,
) -> Any:
    r"""Dense smoothed targets ``q' = (1 - smoothing) q + smoothing u`` as a tf.Tensor.

    The semantics of ``lsr.smooth_labels``; ``labels`` is never modified (a NumPy array
    stays as it was). On one-hot labels with K classes:

    * ``prior="others"`` gives ``clip(q, eps / (K - 1), 1 - eps)``: cleverhans' 2017 MNIST
      tutorial ``Y_train.clip(0.1 / 9, 0.9)`` for ``smoothing=0.1``, K = 10.
    * ``prior="uniform"`` gives ``q - eps (q - 1/K)``: cleverhans v3
      ``CrossEntropy(model, smoothing=0.1)``, 0.91 on the true class and 0.01 elsewhere.

    Args:
        labels: integer class ids (then ``num_classes`` is required; the class axis is
            inserted at ``axis``) or dense floating targets with the classes on ``axis``.
        num_classes: K, for integer labels.
        smoothing: epsilon in [0, 1].
        prior: ``"uniform"``, ``"others"`` or a (K,) class distribution.
        axis: the class axis (of the result).
        dtype: the result's floating dtype (a tf.DType or its name); default: the dense
            labels' dtype, float32 for integer labels.

    Returns:
        A tf.Tensor of smoothed targets.

    Example:
        >>> import numpy as np
        >>> import lsr.tensorflow
        >>> y = np.eye(10, dtype=np.float32)[[3]]
        >>> q = lsr.tensorflow.smooth_labels(y, smoothing=0.1, prior="others")
        >>> print(np.round(q.numpy()[0, 2:5], 4))
        [0.0111 0.9    0.0111]
    """
    labels = _as_tensor("labels", labels)
    if labels.dtype.is_floating:
        _check_class_axis("labels", labels, axis)
    if dtype is not None:
        try:
            dtype = tf.as_dtype(dtype)
        except TypeError:
            fail_type("`dtype` must be a floating dtype (a tf.DType or its name).", "dtype", dtype)
    return lsr.smooth_labels(
        labels,
        num_classes,
        smoothing=_as_option("smoothing", smoothing),
        prior=_as_prior(prior),
        axis=axis,
        dtype=dtype,
    )


@tf.autograph.experimental.do_not_convert
def distill_loss(
    student_logits: Any,
    teacher_logits: Any,
    *,
    temperature: Any,
    axis: int = -1,
    reduction: str = "mean",
    where: Any = None,
    kl: bool = False,
) -> Any:
    """Hinton et al. (2015) distillation loss, ``T**2`` times the soft-target cross-entropy.

    ``lsr.distill_loss`` on tf.Tensors; the teacher's logits pass through
    ``tf.stop_gradient``, so only the student receives gradients. See ``lsr.distill_loss``.

    Example:
        >>> import tensorflow as tf
        >>> import lsr.tensorflow
        >>> student = tf.constant([[1.0, 2.0, 0.5]])
        >>> teacher = tf.constant([[2.0, 1.0, 0.0]])
        >>> loss = lsr.tensorflow.distill_loss(student, teacher, temperature=2.0, kl=True)
        >>> round(float(loss), 6)
        0.418517
    """
    student_logits = _as_tensor("student_logits", student_logits)
    teacher_logits = _as_tensor("teacher_logits", teacher_logits)
    _check_class_axis("student_logits", student_logits, axis)
    _check_class_axis("teacher_logits", teacher_logits, axis)
    where = _as_optional_tensor("where", where)
    if where is None and not student_logits.shape.is_fully_defined():
        # As in smooth_ce: the mean's count of positions from the dynamic shape.
        where = _all_positions(student_logits, axis)
    return lsr.distill_loss(
        student_logits,
        tf.stop_gradient(teacher_logits),
        temperature=_as_option("temperature", temperature),
        axis=axis,
        reduction=reduction,
        where=where,
        kl=kl,
    )


def _scan(body: Any, init: Any, xs: dict[str, Any]) -> Any:
    """``jax.lax.scan``'s contract on a ``tf.while_loop``: one block at a time in graphs
    and under XLA (where unrolled blocks would be scheduled side by side)."""
    blocks = next(v for v in xs.values() if v is not None).shape[0]

    def element(i):
        return {name: None if v is None else v[i] for name, v in xs.items()}

    # The first block runs before the loop: it fixes the outputs' dtypes and shapes.
    carry, (loss, d_hidden) = body(init, element(0))
    losses = tf.TensorArray(loss.dtype, size=blocks, element_shape=loss.shape).write(0, loss)
    rows = ()
    if d_hidden is not None:
        rows = tf.TensorArray(d_hidden.dtype, size=blocks, element_shape=d_hidden.shape)
        rows = rows.write(0, d_hidden)
    # while_loop carries tensors only: None entries of the carry stay outside it.
    present = () if carry is None else tuple(c is not None for c in carry)

    def pack(carry):
        return () if carry is None else tuple(c for c in carry if c is not None)

    def unpack(packed):
        if carry is None:
            return None
        values = iter(packed)
        return tuple(next(values) if here else None for here in present)

    def step(i, packed, losses, rows):
        new_carry, (loss, d_hidden) = body(unpack(packed), element(i))
        losses = losses.write(i, loss)
        if d_hidden is not None:
            rows = rows.write(i, d_hidden)
        return i + 1, pack(new_carry), losses, rows

    # A known trip count also lets XLA differentiate the loop (``linear_smooth_ce``'s
    # gradients with respect to labels and options run autodiff through it).
    _, packed, losses, rows = tf.while_loop(
        lambda i, *_: i < blocks,
        step,
        (tf.constant(1), pack(carry), losses, rows),
        maximum_iterations=blocks - 1,
    )
    return unpack(packed), (losses.stack(), None if rows == () else rows.stack())


@tf.autograph.experimental.do_not_convert
def linear_smooth_ce(
    hidden: Any,
    kernel: Any,
    labels: Any,
    *,
    bias: Any = None,
    smoothing: Any = 0.1,
    prior: Any = "uniform",
    ignore_index: int | None = None,
    weight: Any = None,
    where: Any = None,
    reduction: str = "mean",
    kl: bool = False,
    z_loss: float = 0.0,
    chunk_size: int | None = None,
) -> tf.Tensor:
    r"""``smooth_ce(hidden @ kernel + bias, labels)`` without the N x K logits.

    The loss and its gradients for ``hidden``, ``kernel`` and ``bias`` are computed over
    blocks of ``chunk_size`` rows in a ``tf.while_loop`` (a ``tf.custom_gradient``), so
    that the full logits of a large-vocabulary output layer never exist, also under XLA.
    For "mean" and "sum" the gradients are made in the forward pass and scaled by the
    cotangent in the backward pass; for "none" the backward pass recomputes the blocks
    with each row's cotangent.

    Args:
        hidden: (..., d) hidden states with a known number of rows (flattened to (N, d)).
        kernel: (d, K), as ``keras.layers.Dense``'s kernel.
        labels: integer class ids of hidden's leading shape, or dense targets (..., K).
        bias: (K,) or None.
        smoothing, prior, ignore_index, weight, where, reduction, kl, z_loss: as
            ``smooth_ce`` with the class axis last.
        chunk_size: rows per block; by default as many as make 16 Mi logits.

    Returns:
        As ``smooth_ce``; for "none", one loss per row of hidden's leading shape.
        Gradients reach ``hidden``, ``kernel`` and ``bias`` (first order only).

    Example:
        >>> import tensorflow as tf
        >>> import lsr.tensorflow
        >>> hidden = tf.random.stateless_normal((6, 4), seed=(0, 1))
        >>> kernel = tf.random.stateless_normal((4, 10), seed=(2, 3))
        >>> labels = tf.constant([1, 0, 9, 3, 3, 2])
        >>> fused = lsr.tensorflow.linear_smooth_ce(hidden, kernel, labels, chunk_size=4)
        >>> plain = lsr.tensorflow.smooth_ce(hidden @ kernel, labels)
        >>> print(f"{float(tf.abs(fused - plain)) < 1e-5}")
        True
    """
    hidden = _as_tensor("hidden", hidden)
    kernel = _as_tensor("kernel", kernel)
    labels = _as_tensor("labels", labels)
    bias = _as_optional_tensor("bias", bias)
    where = _as_optional_tensor("where", where)
    if hidden.shape.rank < 1 or not hidden.shape.is_fully_defined():
        raise ValueError(
            "`hidden` must have shape (..., d) with every dimension known (the blocks of "
            "rows are laid out when the function is traced). Received: "
            f"hidden.shape={hidden.shape}"
        )
    dense = labels.dtype.is_floating
    leading = hidden.shape[:-1]
    if kernel.shape.rank == 2:
        _check_class_axis("kernel", kernel, 1)
        # Checked before flattening, so that the message shows the shapes as given.
        ids, targets = tuple(leading), (*leading, kernel.shape[1])
        if tuple(labels.shape) != (targets if dense else ids):
            fail_value(
                f"`labels` must have hidden's leading shape {ids} (class ids) or {targets} "
                "(dense targets).",
                "labels",
                labels,
            )
    if where is not None and tuple(where.shape) != tuple(leading):
        fail_value(
            f"`where` must be a boolean mask of hidden's leading shape {tuple(leading)}.",
            "where",
            where,
        )
    flat_hidden = tf.reshape(hidden, [-1, hidden.shape[-1]])
    flat_labels = tf.reshape(labels, [-1, labels.shape[-1]] if dense else [-1])
    flat_where = None if where is None else tf.reshape(where, [-1])
    xp, flat_labels, spec = prepare_linear_smooth_ce(
        flat_hidden,
        kernel,
        flat_labels,
        bias=bias,
        smoothing=_as_option("smoothing", smoothing),
        prior=_as_prior(prior),
        ignore_index=ignore_index,
        weight=_as_optional_tensor("weight", weight),
        where=flat_where,
        reduction=reduction,
        kl=kl,
        z_loss=z_loss,
        chunk_size=chunk_size,
        projection_name="kernel",
    )
    _refuse_forward_mode(
        flat_hidden,
        kernel,
        bias,
        flat_labels,
        *(getattr(spec, name) for name in _OPTIONS_WITH_GRADIENTS),
    )
    arguments = _differentiable_arguments(flat_labels, spec)
    names = tuple(arguments)
    has_bias = bias is not None

    def run(h, k, b, y, call, with_grad, cotangent=None):
        return _linear.scanned_linear_smooth_ce(
            h,
            k,
            b,
            y,
            xp=xp,
            spec=call,
            chunk_size=chunk_size,
            with_grad=with_grad,
            scan=_scan,
            cotangent=cotangent,
        )

    @tf.custom_gradient
    def forward(h, k, *rest):
        b = rest[0] if has_bias else None
        values = rest[1:] if has_bias else rest
        y, call = _with_arguments(flat_labels, spec, names, values)
        # Recorded, the blocks would all stay alive on the tape (see smooth_ce).
        with _stop_recording():
            loss, grads = run(h, k, b, y, call, with_grad=reduction != "none")

        def backward(upstream):
            if grads is None:
                dtype = _core.compute_dtype(xp, h.dtype)
                _, computed = run(h, k, b, y, call, True, tf.cast(upstream, dtype))
            else:
                computed = [None if g is None else g * tf.cast(upstream, g.dtype) for g in grads]
            return [
                *(_first_order_only(g) for g in computed if g is not None),
                *_argument_gradients(
                    lambda labels, o: run(h, k, b, labels, o, with_grad=False)[0],
                    flat_labels,
                    spec,
                    names,
                    values,
                    upstream,
                ),
            ]

        return loss, backward

    loss = forward(flat_hidden, kernel, *([bias] if has_bias else []), *arguments.values())
    return tf.reshape(loss, leading) if reduction == "none" else loss
