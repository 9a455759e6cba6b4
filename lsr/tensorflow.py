"""TensorFlow adapter: lsr's one core on tf.Tensors, with a custom gradient.

* ``smooth_ce``: the label-smoothed cross-entropy with the generic ``lsr.smooth_ce``
  keywords, eager, inside ``tf.function`` and under ``tf.function(jit_compile=True)``.
* ``smooth_labels``: dense smoothed targets, returned as a tf.Tensor.

Both accept tf.Tensors, tf.Variables, NumPy arrays and (nested) Python lists, and never
modify their input. Validation is ``lsr._checks.prepare_smooth_ce`` (the errors every
backend raises); the arithmetic is ``lsr._core`` through lsr's TensorFlow namespace
(``lsr._tf_namespace``), since array-api-compat has none for TensorFlow.

The gradient with respect to the logits is registered with ``tf.custom_gradient``. Inside
a ``tf.function`` (with or without XLA) the loss and its gradient come from one pass over
the logits (``lsr._core.loss_and_grad``: one exp serves both; a graph that asks for no
gradient never runs its ops); eagerly the backward pass computes it only when a tape asks,
from the logits and one logsumexp per position (``lsr._core.smooth_ce_grad``). Either way
no logits-sized tensor besides the logits is kept for the backward pass, where autodiff
through the core would keep several (``benchmarks/`` has the measurements).
Gradients reach the logits only: labels (also soft ones), ``weight``, ``prior`` and
``smoothing`` are constants of the loss, so ``tape.gradient`` returns None for them.
The gradient itself cannot be differentiated again (it would miss the logsumexp's
dependence on the logits): asking for a second derivative raises ``NotImplementedError``.

Inside ``tf.function`` values are abstract, so integer labels out of range cannot raise:
their loss (and any reduction over it) is NaN. Shapes with unknown dimensions (a batch
dimension of None, as in ``keras.Model.fit``) are supported when at most one dimension of
the logits is unknown.

Example:
    >>> import tensorflow as tf
    >>> import lsr.tensorflow
    >>> logits = tf.constant([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
    >>> loss = lsr.tensorflow.smooth_ce(logits, tf.constant([0, 1]), smoothing=0.1)
    >>> print(f"{float(loss):.4f}")
    0.5047
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import tensorflow as tf

import lsr
from lsr import _core, _linear
from lsr._checks import prepare_linear_smooth_ce, prepare_smooth_ce
from lsr._validation import fail_type

__all__ = ["distill_loss", "linear_smooth_ce", "smooth_ce", "smooth_labels"]


def _as_tensor(name: str, value: Any) -> Any:
    """A tf.Tensor from a tensor, variable, NumPy array or Python (nested) list."""
    if isinstance(value, tf.Variable):
        # Reading the variable keeps it on the tape, so its gradient still arrives.
        return tf.convert_to_tensor(value)
    if isinstance(value, tf.Tensor):
        return value
    if isinstance(value, (np.ndarray, np.generic, numbers.Number, list, tuple)):
        try:
            return tf.convert_to_tensor(value)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"`{name}` could not be converted to a tf.Tensor: {error} "
                f"Received: {name}={value!r}"
            ) from error
    fail_type(
        f"`{name}` must be a tf.Tensor, a NumPy array or a list of numbers; convert arrays "
        "of other libraries first.",
        name,
        value,
    )


def _as_option(name: str, value: Any) -> Any:
    """Array-valued options as tensors; names, None and Python numbers as they are."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, np.generic) and isinstance(value, numbers.Real):
        return value.item()  # A NumPy scalar is a number here, not a NumPy array.
    if isinstance(value, numbers.Real):
        return value
    return _as_tensor(name, value)


def _position_shape(logits: Any, axis: int) -> Any:
    """The logits' dynamic shape without the class axis."""
    shape = tf.shape(logits)
    return tf.concat([shape[:axis], shape[axis + 1 :]], axis=0)


@tf.custom_gradient
def _first_order_only(grad: Any) -> Any:
    def second_order(upstream: Any) -> Any:
        raise NotImplementedError(
            "lsr.tensorflow.smooth_ce registers a first-order custom gradient; its gradient "
            "cannot be differentiated again. Received: a request for a second derivative"
        )

    return tf.identity(grad), second_order


def _smooth_ce_with_gradient(logits: Any, labels: Any, options: dict[str, Any]) -> Any:
    """``_core.smooth_ce`` forward, ``_core.smooth_ce_grad`` backward (logits only)."""
    axis = options["axis"]
    reduction = options["reduction"]
    grad_options = {key: value for key, value in options.items() if key != "kl"}
    # The core broadcasts the cotangent of a reduced loss to the positions' static
    # shape; with an unknown dimension the adapter does it with the dynamic shape.
    dynamic = not logits.shape.is_fully_defined() and reduction != "none"

    if not tf.executing_eagerly():
        return _fused_smooth_ce(logits, labels, options)

    @tf.custom_gradient
    def forward(z):
        loss, lse, denominator = _core.smooth_ce(z, labels, **options)

        def backward(upstream):
            cotangent = tf.cast(upstream, lse.dtype)
            backward_options = grad_options
            if dynamic:
                if reduction == "mean":
                    cotangent = _core._per_unit(options["xp"], cotangent, denominator)
                cotangent = tf.broadcast_to(cotangent, _position_shape(z, axis))
                backward_options = dict(grad_options, reduction="none")
            grad = _core.smooth_ce_grad(z, labels, lse, denominator, cotangent, **backward_options)
            return _first_order_only(grad)

        return loss, backward

    return forward(logits)


def _fused_smooth_ce(logits: Any, labels: Any, options: dict[str, Any]) -> Any:
    """In a graph: the loss and its gradient from one pass (``_core.loss_and_grad``).

    One exp of the logits serves both (XLA's CPU reductions do not vectorize an exp fused
    into them, so a separate logsumexp and backward exp cost twice); a graph that asks
    for no gradient never runs the gradient's ops. Eagerly, ``_smooth_ce_with_gradient``
    computes the gradient only when a tape asks for it.
    """
    axis, reduction = options["axis"], options["reduction"]

    @tf.custom_gradient
    def forward(z):
        loss, grad = _core.reduced_loss_and_grad(z, labels, **options)

        def backward(upstream):
            cotangent = tf.cast(upstream, grad.dtype)
            if reduction == "none":
                cotangent = tf.expand_dims(cotangent, axis)
            return _first_order_only(grad * cotangent)

        return loss, backward

    return forward(logits)


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
            out-of-range label gives NaN.

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
    if logits.shape.rank is None:
        raise ValueError(
            "`logits` must have a known number of dimensions (give the tf.function an "
            "input_signature with a rank). Received: logits.shape=<unknown rank>"
        )
    _, logits, labels, options = prepare_smooth_ce(
        logits,
        labels,
        smoothing=_as_option("smoothing", smoothing),
        prior=_as_option("prior", prior),
        axis=axis,
        ignore_index=ignore_index,
        weight=_as_option("weight", weight),
        where=_as_option("where", where),
        reduction=reduction,
        kl=kl,
        z_loss=z_loss,
    )
    if not logits.shape.is_fully_defined() and options["where"] is None:
        # The core counts the positions of a mean from the static shape; with an unknown
        # dimension, an all-true mask gives it the count as a tensor instead.
        options["where"] = tf.ones(_position_shape(logits, options["axis"]), dtype=tf.bool)
    return _smooth_ce_with_gradient(logits, labels, options)


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
    if labels.dtype.is_integer and labels.dtype != tf.int64:
        # The core compares ids with int64 class indices; TensorFlow does not promote.
        labels = tf.cast(labels, tf.int64)
    return lsr.smooth_labels(
        labels,
        num_classes,
        smoothing=_as_option("smoothing", smoothing),
        prior=_as_option("prior", prior),
        axis=axis,
        dtype=None if dtype is None else tf.as_dtype(dtype),
    )


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
    return lsr.distill_loss(
        _as_tensor("student_logits", student_logits),
        tf.stop_gradient(_as_tensor("teacher_logits", teacher_logits)),
        temperature=temperature,
        axis=axis,
        reduction=reduction,
        where=None if where is None else _as_tensor("where", where),
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

    _, packed, losses, rows = tf.while_loop(
        lambda i, *_: i < blocks, step, (tf.constant(1), pack(carry), losses, rows)
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
    bias = None if bias is None else _as_tensor("bias", bias)
    where = _as_option("where", where)
    if hidden.shape.rank is None or hidden.shape.rank < 1 or not hidden.shape.is_fully_defined():
        raise ValueError(
            "`hidden` must have shape (..., d) with every dimension known (the blocks of "
            "rows are laid out when the function is traced). Received: "
            f"hidden.shape={hidden.shape}"
        )
    dense = labels.dtype.is_floating
    leading = hidden.shape[:-1]
    flat_hidden = tf.reshape(hidden, [-1, hidden.shape[-1]])
    flat_labels = tf.reshape(labels, [-1, labels.shape[-1]] if dense else [-1])
    flat_where = None if where is None else tf.reshape(where, [-1])
    _, flat_labels, options = prepare_linear_smooth_ce(
        flat_hidden,
        kernel,
        flat_labels,
        bias=bias,
        smoothing=_as_option("smoothing", smoothing),
        prior=_as_option("prior", prior),
        ignore_index=ignore_index,
        weight=_as_option("weight", weight),
        where=flat_where,
        reduction=reduction,
        kl=kl,
        z_loss=z_loss,
        chunk_size=chunk_size,
        projection_name="kernel",
    )
    xp = options["xp"]

    def run(h, k, b, with_grad, cotangent=None):
        return _linear.scanned_linear_smooth_ce(
            h,
            k,
            b,
            flat_labels,
            xp=xp,
            options=options,
            chunk_size=chunk_size,
            with_grad=with_grad,
            scan=_scan,
            cotangent=cotangent,
        )

    @tf.custom_gradient
    def forward(h, k, *maybe_bias):
        b = maybe_bias[0] if maybe_bias else None
        loss, grads = run(h, k, b, with_grad=reduction != "none")

        def backward(upstream):
            if grads is None:
                dtype = _core.compute_dtype(xp, h.dtype)
                _, computed = run(h, k, b, True, tf.cast(upstream, dtype))
            else:
                computed = [None if g is None else g * tf.cast(upstream, g.dtype) for g in grads]
            return [_first_order_only(g) for g in computed if g is not None]

        return loss, backward

    loss = forward(flat_hidden, kernel, *([] if bias is None else [bias]))
    return tf.reshape(loss, leading) if reduction == "none" else loss
