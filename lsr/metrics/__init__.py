"""Calibration and representation metrics: see what label smoothing does to a model.

Müller, Kornblith & Hinton (2019), "When Does Label Smoothing Help?", show that label
smoothing calibrates networks (lower expected calibration error, much like temperature
scaling) and pulls penultimate-layer activations into tight, equidistant clusters. This
package measures both on any array-API array (NumPy, array-api-strict, PyTorch, JAX;
TensorFlow through lsr's namespace), with the same numbers on every backend:

* ``expected_calibration_error`` and ``reliability_diagram`` (Guo et al. 2017; equal-mass
  bins, classwise scope, debiasing and ``sample_weight``),
* ``calibration_error_interval``: the error with a bootstrap confidence interval
  (Kumar et al. 2019),
* ``calibration_state``, ``update_calibration_state``, ``merge_calibration_states`` and
  ``calibration_error_from_state``: the same error streamed over batches and devices,
* ``negative_log_likelihood``, ``fit_temperature`` and ``apply_temperature``
  (temperature scaling, Guo et al. 2017),
* ``penultimate_projection`` (Müller et al. 2019, Figure 1),
* ``plot_reliability_diagram`` and ``plot_penultimate_projection``, which need the
  optional ``matplotlib`` (lsr's ``plot`` extra), imported only when called.

Importing this package imports no framework, NumPy or matplotlib.

Modules, one concern each (the public names are only those below):

* ``_core``: the array-API arithmetic (binning, calibration error, NLL and its
  derivatives in the inverse temperature, the plane projection), pure ``xp`` code;
* ``_inputs``: validation of (scores, labels) pairs, shared by the next two;
* ``_calibration``: reliability diagram, calibration error, NLL;
* ``_intervals``: bootstrap confidence intervals of the calibration error;
* ``_streaming``: the calibration error's per-bin sums, batch by batch;
* ``_temperature``: temperature scaling and its solver;
* ``_projection``: the penultimate-layer projection;
* ``_plotting``: the figures.
"""

from lsr.metrics._calibration import (
    ReliabilityDiagram,
    expected_calibration_error,
    negative_log_likelihood,
    reliability_diagram,
)
from lsr.metrics._intervals import CalibrationInterval, calibration_error_interval
from lsr.metrics._plotting import plot_penultimate_projection, plot_reliability_diagram
from lsr.metrics._projection import PenultimateProjection, penultimate_projection
from lsr.metrics._streaming import (
    CalibrationState,
    calibration_error_from_state,
    calibration_state,
    merge_calibration_states,
    update_calibration_state,
)
from lsr.metrics._temperature import apply_temperature, fit_temperature

__all__ = [
    "CalibrationInterval",
    "CalibrationState",
    "PenultimateProjection",
    "ReliabilityDiagram",
    "apply_temperature",
    "calibration_error_from_state",
    "calibration_error_interval",
    "calibration_state",
    "expected_calibration_error",
    "fit_temperature",
    "merge_calibration_states",
    "negative_log_likelihood",
    "penultimate_projection",
    "plot_penultimate_projection",
    "plot_reliability_diagram",
    "reliability_diagram",
    "update_calibration_state",
]

# The public objects report the path users import them from (help(), reprs, pickles of
# the result tuples), not the private module that defines them.
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
