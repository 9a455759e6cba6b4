"""The gradient machinery shared by ``smooth_ce`` and ``linear_smooth_ce``: which inputs a
tape may ask a gradient for, gradients with respect to labels and options (autodiff of the
core's forward pass), first order only, and reverse mode only."""

from __future__ import annotations

import contextlib
from typing import Any

import tensorflow as tf

from lsr import _core

__all__ = [
    "OPTIONS_WITH_GRADIENTS",
    "argument_gradients",
    "compiled_by_xla",
    "differentiable_arguments",
    "first_order_only",
    "may_need_gradient",
    "refuse_forward_mode",
    "stop_recording",
    "with_arguments",
]

try:
    # TensorFlow's tape controls have no public form: a tape-wide "stop recording" and
    # "may any tape or forward accumulator differentiate with respect to these tensors"
    # (what tf.function itself asks). Without them (a TensorFlow that moved them), the
    # adapter stays correct: it records what it need not, and computes every gradient.
    from tensorflow.python.eager import forwardprop_util as _forwardprop_util
    from tensorflow.python.eager import record as _record
    from tensorflow.python.ops import gradients_util as _gradients_util

    stop_recording = _record.stop_recording
    _possible_gradient_types = _gradients_util.PossibleTapeGradientTypes
    _watched_by_a_tape = _record.should_record_backprop
    # A tape nested in a backward pass sees nothing while a forward accumulator records,
    # unless the accumulators' state is set aside (as TensorFlow's own JVP helper does).
    _nested_tape_context = _forwardprop_util.push_forwardprop_state
except (ImportError, AttributeError):  # pragma: no cover - depends on the TF version
    stop_recording = contextlib.nullcontext
    _possible_gradient_types = None
    _watched_by_a_tape = None
    _nested_tape_context = contextlib.nullcontext

try:
    # Whether a graph is compiled by XLA has no public form either (TensorFlow's own
    # ops ask it this way). Without it the adapter takes the form that suits graphs.
    from tensorflow.python.ops import control_flow_util as _control_flow_util

    _in_xla_context = _control_flow_util.GraphOrParentsInXlaContext
except (ImportError, AttributeError):  # pragma: no cover - depends on the TF version
    _in_xla_context = None


def compiled_by_xla() -> bool:
    """Whether the graph being built is compiled by XLA (``tf.function(jit_compile=True)``,
    Keras' ``jit_compile``): its fusions then compute what one pass can share only once,
    where a graph run op by op pays for every extra op."""
    if tf.executing_eagerly() or _in_xla_context is None:
        return False
    return bool(_in_xla_context(tf.compat.v1.get_default_graph()))


@tf.custom_gradient
def first_order_only(grad: Any) -> Any:
    def second_order(upstream: Any) -> Any:
        raise NotImplementedError(
            "lsr.tensorflow.smooth_ce registers a first-order custom gradient; its gradient "
            "cannot be differentiated again. Received: a request for a second derivative"
        )

    return tf.identity(grad), second_order


# The arguments besides the logits that a gradient may be asked for, when they are
# floating tensors: dense labels and the array-valued options.
OPTIONS_WITH_GRADIENTS = ("weight", "prior", "smoothing")


def may_need_gradient(tensor: Any) -> bool:
    """Whether a gradient with respect to ``tensor`` can be asked for.

    Inside a graph it always can (``tf.gradients``, or a tape outside the function), and
    the ops of a gradient nobody asks for are pruned from the graph. Eagerly only a tape
    (or a ``tf.autodiff.ForwardAccumulator``) that watches ``tensor``, or the variable it
    was read from, can ask, and the backward pass then spends nothing on the others.
    """
    if not tf.executing_eagerly() or _possible_gradient_types is None:
        return True
    return bool(_possible_gradient_types([tensor]))


def refuse_forward_mode(*values: Any) -> None:
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


def differentiable_arguments(labels: Any, spec: _core.Spec) -> dict[str, Any]:
    """Name -> floating tensor, for the arguments besides the logits that get gradients."""
    candidates = {"labels": labels if spec.dense else None}
    candidates.update({name: getattr(spec, name) for name in OPTIONS_WITH_GRADIENTS})
    return {
        name: value
        for name, value in candidates.items()
        if isinstance(value, tf.Tensor) and value.dtype.is_floating and may_need_gradient(value)
    }


def with_arguments(
    labels: Any, spec: _core.Spec, names: tuple[str, ...], values: tuple[Any, ...]
) -> tuple[Any, _core.Spec]:
    """``labels`` and ``spec`` with the named arguments replaced by ``values``."""
    replaced = dict(zip(names, values, strict=True))
    return replaced.pop("labels", labels), spec.replace(**replaced)


def argument_gradients(
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
            loss = forward(*with_arguments(labels, spec, names, values))
        cotangent = tf.cast(upstream, loss.dtype)
        grads = tape.gradient(loss, list(values), output_gradients=cotangent)
    # (A gradient through a gather, such as a block's rows of the labels, comes as
    # IndexedSlices: made dense, the shape of its argument.)
    return [None if g is None else first_order_only(tf.convert_to_tensor(g)) for g in grads]
