"""Keras 3 adapter: ``SmoothCrossEntropy``, a drop-in for ``CategoricalCrossentropy``, and
``SmoothBinaryCrossEntropy``, a drop-in for ``BinaryCrossentropy``; ``CalibrationError``,
``lsr.metrics``' streaming calibration error as a Keras metric.

Swapping the class name is the whole migration: the constructor takes the arguments of
``keras.losses.CategoricalCrossentropy`` (``from_logits``, ``label_smoothing``, ``axis``,
``reduction``, ``name``, ``dtype``) with the same defaults, plus lsr's ``prior`` and
``ignore_class`` (as in ``SparseCategoricalCrossentropy``). Labels may be one-hot (or
soft) targets of the predictions' shape, or integer class ids without the class axis
(also with a trailing axis of size 1, as Keras' sparse losses accept them): integer
labels are never expanded to one-hot.

Backends: on TensorFlow the loss runs ``lsr.tensorflow.smooth_ce`` (custom gradient,
``tf.function``, XLA, ``tf.distribute``); on JAX, PyTorch and NumPy it runs the generic
``lsr.smooth_ce`` on the backend's own arrays (autodiff through lsr's array-API core).
Any other Keras backend raises ``NotImplementedError`` when the loss is created.

Where it differs from ``CategoricalCrossentropy``: ``label_smoothing`` is applied along
``axis`` (Keras counts the classes on the last axis whatever ``axis`` is), and it also
applies to integer labels. Under ``tf.distribute`` strategies the "sum_over_batch_size"
(and "mean") reduction is the mean over the global batch's kept positions, exactly as on
one device, where Keras' own losses average each replica's mean (different when the
replicas keep different numbers of positions: ``ignore_class``, uneven last batches).
With ``from_logits=False`` probabilities are turned into
logits the way Keras' TensorFlow backend does (normalized, clipped to
``[epsilon, 1 - epsilon]``, logarithm; or, for the output of a Keras softmax, the logits
behind it).

Keras treats ``y_true`` as a constant; a caller whose tape watches soft (floating)
``y_true`` targets gets their gradient, the same eagerly and inside ``tf.function``
(``lsr.tensorflow``'s rule); integer labels have none. The constructor checks its
arguments when the loss is made; ``call`` checks shapes before computing (a class axis of
unknown size, as a model output of shape ``(None, None)`` gives in ``fit``, is a
ValueError). Inside ``fit`` label values cannot be read: an out-of-range class id makes
the loss NaN.
"""

from lsr.keras._binary import SmoothBinaryCrossEntropy
from lsr.keras._categorical import SmoothCrossEntropy
from lsr.keras._metrics import CalibrationError

__all__ = ["CalibrationError", "SmoothBinaryCrossEntropy", "SmoothCrossEntropy"]

# Saved models and reprs name the public path, not the private module.
SmoothBinaryCrossEntropy.__module__ = SmoothCrossEntropy.__module__ = __name__
CalibrationError.__module__ = __name__
