"""lsr: label-smoothing regularization, one definition for every array library.

``import lsr`` imports no framework. The generic functions here take any array-API
array (tested: NumPy, array-api-strict, PyTorch, JAX, and TensorFlow through lsr's own
namespace; other array-API libraries go through array-api-compat untested) and return
the same array type. Framework adapters with each framework's
conventions live in ``lsr.jax``, ``lsr.torch``, ``lsr.tensorflow`` and ``lsr.keras``;
calibration and representation tools in ``lsr.metrics``.
"""

from lsr._aux import Aux
from lsr._binary import binary_smoothing, smooth_bce, smooth_binary_labels
from lsr._distill import distill_loss
from lsr._functions import estimate_prior, smooth_ce, smooth_labels

__all__ = [
    "Aux",
    "binary_smoothing",
    "distill_loss",
    "estimate_prior",
    "smooth_bce",
    "smooth_binary_labels",
    "smooth_ce",
    "smooth_labels",
]
__version__ = "0.1.0"
