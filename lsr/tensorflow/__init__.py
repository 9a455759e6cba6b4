"""TensorFlow adapter: lsr's one core on tf.Tensors, with a custom gradient.

* ``smooth_ce``: the label-smoothed cross-entropy with the generic ``lsr.smooth_ce``
  keywords, eager, inside ``tf.function`` and under ``tf.function(jit_compile=True)``.
* ``smooth_bce``: the label-smoothed sigmoid (binary, multi-label) cross-entropy with the
  generic ``lsr.smooth_bce`` keywords, in the same three modes and with the same
  gradient rules (``lsr._core.binary_grad`` for the logits).
* ``smooth_labels``: dense smoothed targets, returned as a tf.Tensor.
* ``distill_loss`` and ``linear_smooth_ce``: the generic functions' TensorFlow forms.

All accept tf.Tensors, tf.Variables, NumPy arrays and (nested) Python lists, and never
modify their input. Validation is ``lsr._checks`` (the errors every backend raises); the
arithmetic is ``lsr._core`` through lsr's TensorFlow namespace (``lsr.tensorflow._namespace``),
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

Modules: ``_namespace`` (the array namespace the core runs on), ``_inputs`` (conversion
and shape checks), ``_gradients`` (which gradients a tape may ask for; gradients of labels
and options), ``_functional`` (``smooth_ce``, ``smooth_labels``, ``distill_loss``),
``_binary`` (``smooth_bce``), ``_linear`` (``linear_smooth_ce``).

Example:
    >>> import tensorflow as tf
    >>> import lsr.tensorflow
    >>> logits = tf.constant([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
    >>> loss = lsr.tensorflow.smooth_ce(logits, tf.constant([0, 1]), smoothing=0.1)
    >>> print(f"{float(loss):.4f}")
    0.5047
"""

from __future__ import annotations

from lsr.tensorflow._binary import smooth_bce
from lsr.tensorflow._functional import distill_loss, smooth_ce, smooth_labels
from lsr.tensorflow._linear import linear_smooth_ce

__all__ = ["distill_loss", "linear_smooth_ce", "smooth_bce", "smooth_ce", "smooth_labels"]
