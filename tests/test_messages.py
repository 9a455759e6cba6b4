"""Five typical mistakes get messages that say the fix, not only the problem (what a new
user hit in a trial): float class ids, the class axis of (B, T, V) logits, labels of
shape (N, 1), and a single-output model. Probabilities passed as logits are warned about
where the framework can tell without reading values (tests/torch/test_torch_messages.py,
tests/keras/test_keras_messages.py)."""

from __future__ import annotations

import numpy as np
import pytest

import lsr


def test_float_class_ids_say_cast():
    with pytest.raises(ValueError, match=r"class ids stored as floats.*cast them to an integer"):
        lsr.smooth_ce(np.zeros((4, 3)), np.array([0.0, 1.0, 2.0, 0.0]))


def test_labels_with_a_trailing_unit_axis_say_squeeze():
    with pytest.raises(ValueError, match=r"Squeeze the trailing axis of size 1"):
        lsr.smooth_ce(np.zeros((4, 3)), np.zeros((4, 1), dtype=np.int64))


def test_sequence_logits_with_the_class_axis_elsewhere_say_which_axis():
    # (B, T, V) logits read with PyTorch's class axis 1.
    with pytest.raises(ValueError, match=r"classes are on axis -1, pass axis=-1"):
        lsr.smooth_ce(np.zeros((2, 5, 7)), np.zeros((2, 5), dtype=np.int64), axis=1)


def test_a_single_class_says_use_a_binary_loss():
    with pytest.raises(ValueError, match=r"single class.*sigmoid \(binary\) cross-entropy"):
        lsr.smooth_ce(np.zeros((4, 1)), np.zeros(4, dtype=np.int64))


def test_right_shapes_get_no_hint():
    """The hints are specific: a shape that fits no known mistake gets none."""
    with pytest.raises(ValueError) as error:
        lsr.smooth_ce(np.zeros((4, 3)), np.zeros(5, dtype=np.int64))
    assert "Squeeze" not in str(error.value) and "pass axis" not in str(error.value)
