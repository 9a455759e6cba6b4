"""Calls that repeat the options and shapes of an earlier one skip the checks that do not
read the labels' values (``lsr._checks._KnownOptions``): on every selected backend, a
repeated call must still refuse what a first call refuses, and give the first call's
values."""

from __future__ import annotations

import inspect
import numbers

import numpy as np
import pytest

import lsr
from lsr import _checks
from tests import reference


def _logits(seed=0):
    return np.random.default_rng(seed).normal(size=(6, 5)).astype(np.float32)


def _loss(backend, logits, labels, **options):
    value = lsr.smooth_ce(backend.asarray(logits), backend.asarray(labels), **options)
    return backend.to_numpy(value)


@pytest.mark.parametrize("bad", [5, -1, -100])
def test_a_repeated_call_still_checks_the_label_values(backend, bad):
    logits, labels = _logits(), np.array([0, 1, 2, 3, 4, 0])
    for _ in range(2):  # (the second call finds the first one's options)
        _loss(backend, logits, labels)
    wrong = labels.copy()
    wrong[3] = bad
    with pytest.raises(ValueError, match="class ids"):
        _loss(backend, logits, wrong)


@pytest.mark.parametrize(
    ("option", "good", "bad"),
    [
        ("kl", False, 0),
        ("z_loss", 0.0, True),
        ("smoothing", 1.0, True),
        ("return_aux", False, 0),
        ("reduction", "mean", "MEAN"),
    ],
)
def test_a_repeated_call_still_checks_the_option_types(backend, option, good, bad):
    """1 == 1.0 == True as keys: each option's type is part of what was checked."""
    logits, labels = _logits(), np.array([0, 1, 2, 3, 4, 0])
    for _ in range(2):
        _loss(backend, logits, labels, **{option: good})
    with pytest.raises((TypeError, ValueError)):
        _loss(backend, logits, labels, **{option: bad})


def test_ignored_and_kept_ids_alternate(backend):
    """The same options with and without ids equal to ignore_index, in turn: each call
    gets its own labels' values (the reference's), not an earlier call's."""
    logits = _logits(1)
    with_ignored = np.array([0, -100, 2, 3, -100, 1])
    without = np.array([0, 4, 2, 3, 1, 1])
    for labels in (with_ignored, without, with_ignored, without):
        got = _loss(backend, logits, labels, reduction="mean", ignore_index=-100)
        expected = reference.smooth_ce(logits, labels, smoothing=0.1, ignore_index=-100)
        np.testing.assert_allclose(got, expected, rtol=2e-6)


class _Schedule:
    """A smoothing a training loop changes in place: a real number, hashed by identity."""

    def __init__(self, value):
        self.value = value

    def __float__(self):
        return float(self.value)

    def __le__(self, other):
        return float(self) <= other

    def __ge__(self, other):
        return float(self) >= other


numbers.Real.register(_Schedule)


def test_an_option_changed_in_place_is_read_again(backend):
    """Equal to itself after it changed, such an object must not get the spec made of
    its earlier value."""
    logits, labels = _logits(2), np.array([0, 1, 2, 3, 4, 0])
    smoothing = _Schedule(0.0)
    for value in (0.0, 0.5, 0.9):
        smoothing.value = value
        got = _loss(backend, logits, labels, smoothing=smoothing, reduction="mean")
        expected = reference.smooth_ce(logits, labels, smoothing=value)
        np.testing.assert_allclose(got, expected, rtol=2e-6)


def test_the_record_of_known_options_stays_small(backend):
    # (Options that differ by their smoothing alone: one shape, so that a backend that
    # compiles per shape, JAX, compiles each operation once.)
    logits = np.zeros((2, 3), np.float32)
    for i in range(2 * _checks.KNOWN_OPTIONS_SIZE):
        _loss(backend, logits, np.array([0, 1]), smoothing=i / 1000)
    assert len(_checks._KNOWN_OPTIONS) == _checks.KNOWN_OPTIONS_SIZE


# Two valid values of each option of ``check_smooth_ce``: a new parameter must be added
# here (the signature is compared with this table), and each is shown to change the spec
# that a repeated call gets.
OPTION_VALUES = {
    "smoothing": (0.1, 0.25),
    "prior": ("uniform", "others"),
    "axis": (1, 0),
    "ignore_index": (None, 7),
    "reduction": ("mean", "sum"),
    "kl": (False, True),
    "z_loss": (0.0, 0.01),
    "softcap": (None, 5.0),
    "confidence_penalty": (0.0, 0.1),
    "return_aux": (False, True),
}


def test_every_option_is_part_of_what_a_repeated_call_matches():
    parameters = inspect.signature(_checks.check_smooth_ce).parameters
    options = {name for name in parameters if name not in _checks._NOT_KEYED}
    assert options == set(OPTION_VALUES)
    logits = np.zeros((5, 5), np.float32)
    labels = np.array([0, 1, 2, 3, 4])
    base = {name: values[0] for name, values in OPTION_VALUES.items()}
    for name, (_, other) in OPTION_VALUES.items():
        changed = {**base, name: other}
        for _ in range(2):  # (the second call finds the first one's options)
            _checks.check_smooth_ce(logits, labels, weight=None, **base)
        _, _, spec = _checks.check_smooth_ce(logits, labels, weight=None, **changed)
        _checks._KNOWN_OPTIONS.clear()
        _, _, expected = _checks.check_smooth_ce(logits, labels, weight=None, **changed)
        assert spec == expected, name


@pytest.mark.parametrize("loss", [lsr.smooth_ce, lsr.smooth_bce], ids=["softmax", "binary"])
def test_a_repeated_call_still_refuses_arrays_of_two_libraries(backend, loss):
    """The key holds the arrays' types: labels of another library with the same dtype
    (JAX's int32 and NumPy's are one dtype object) are refused as on a first call."""
    logits = _logits(3)
    labels = np.array([0, 1, 2, 3, 4, 0])
    if loss is lsr.smooth_bce:
        logits, labels = logits[:2], np.array([[0, 1, 1, 0, 1], [1, 0, 0, 1, 1]])
    own = backend.asarray(labels)
    for _ in range(2):
        loss(backend.asarray(logits), own)
    if backend.name == "numpy":
        import array_api_strict

        other = array_api_strict.asarray(labels)
    else:
        # NumPy labels, of the same dtype where the library's is NumPy's (JAX).
        name = str(own.dtype)
        other = labels.astype(name) if name in ("int32", "int64") else labels
    with pytest.raises(TypeError, match="array"):
        loss(backend.asarray(logits), other)


def test_a_repeated_call_still_refuses_ids_beside_an_unmatchable_ignore_index(backend):
    """An ignore_index that the labels' index dtype cannot hold matches no label: a
    repeated call keeps it out of the comparisons (it would overflow there) and still
    names an id out of range."""
    logits = _logits(4)
    good, bad = np.array([0, 1, 2, 3, 4, 0]), np.array([0, 1, 9, 3, 4, 0])
    for _ in range(2):
        _loss(backend, logits, good, ignore_index=2**70)
    with pytest.raises(ValueError, match="class ids"):
        _loss(backend, logits, bad, ignore_index=2**70)


# --- the binary checks' known options (``lsr._checks_binary._KnownBinaryOptions``) ---------


def _binary_loss(backend, logits, labels, **options):
    value = lsr.smooth_bce(backend.asarray(logits), backend.asarray(labels), **options)
    return backend.to_numpy(value)


@pytest.mark.parametrize(
    ("labels", "bad", "options"),
    [
        (np.array([[0.0, 1.0], [0.25, 1.0]], np.float32), 1.5, {}),
        (np.array([[0.0, 1.0], [0.25, 1.0]], np.float32), np.nan, {}),
        (np.array([[0, 1], [1, 0]]), 2, {}),
        (np.array([[0, 1], [1, -1]]), -2, {"ignore_index": -1}),
    ],
    ids=["soft above 1", "soft NaN", "integer 2", "integer beside ignore_index"],
)
def test_a_repeated_binary_call_still_checks_the_label_values(backend, labels, bad, options):
    logits = _logits()[:2, :2]
    for _ in range(2):  # (the second call finds the first one's options)
        _binary_loss(backend, logits, labels, **options)
    wrong = labels.copy()
    wrong[0, 0] = bad
    with pytest.raises(ValueError, match="Received: labels"):
        _binary_loss(backend, logits, wrong, **options)


def test_ignored_and_kept_binary_labels_alternate(backend):
    """Each call gets its own labels' values (the reference's), not an earlier call's."""
    logits = _logits(1)[:2]
    with_ignored = np.array([[0, -1, 1, 1, -1], [1, 0, 0, 1, 1]])
    without = np.array([[0, 1, 1, 1, 0], [1, 0, 0, 1, 1]])
    for labels in (with_ignored, without, with_ignored, without):
        got = _binary_loss(backend, logits, labels, ignore_index=-1)
        expected = reference.smooth_bce(
            logits, np.maximum(labels, 0), smoothing=0.1, prior=0.5, keep=labels != -1
        )
        np.testing.assert_allclose(got, expected, rtol=2e-6)


def test_a_binary_option_changed_in_place_is_read_again(backend):
    logits, labels = _logits(2)[:2], (_logits(3)[:2] > 0).astype(np.float32)
    smoothing = _Schedule(0.0)
    for value in (0.0, 0.5, 0.9):
        smoothing.value = value
        got = _binary_loss(backend, logits, labels, smoothing=smoothing)
        expected = reference.smooth_bce(logits, labels, smoothing=value, prior=0.5)
        np.testing.assert_allclose(got, expected, rtol=2e-6)


@pytest.mark.parametrize(
    ("option", "good", "bad"),
    [("smoothing", 1.0, True), ("prior", 1.0, True), ("reduction", "mean", "MEAN")],
)
def test_a_repeated_binary_call_still_checks_the_option_types(backend, option, good, bad):
    logits, labels = _logits()[:2], (_logits(1)[:2] > 0).astype(np.float32)
    for _ in range(2):
        _binary_loss(backend, logits, labels, **{option: good})
    with pytest.raises((TypeError, ValueError)):
        _binary_loss(backend, logits, labels, **{option: bad})


# Two valid values of each keyed option of ``check_smooth_bce`` (as the table above).
BINARY_OPTION_VALUES = {
    "smoothing": (0.1, 0.25),
    "prior": ("uniform", 0.5),  # (u = 1 / K: the class axis changes it)
    "axis": (-1, 0),
    "ignore_index": (None, 7),
    "reduction": ("mean", "sum"),
    "logits_name": ("logits", "input"),
    "labels_name": ("labels", "target"),
}


def test_every_binary_option_is_part_of_what_a_repeated_call_matches():
    from lsr import _checks_binary

    parameters = inspect.signature(_checks_binary.check_smooth_bce).parameters
    arrays = {"logits", "labels", "weight", "pos_weight", "where", "namespace"}
    assert {name for name in parameters if name not in arrays} == set(BINARY_OPTION_VALUES)
    assert set(_checks_binary._KEYED_NAMES) == set(BINARY_OPTION_VALUES)
    logits, labels = np.zeros((4, 5), np.float32), np.eye(4, 5, dtype=np.int64)
    arrays = {"weight": None, "pos_weight": None, "where": None}
    base = {name: values[0] for name, values in BINARY_OPTION_VALUES.items()}
    for name, (_, other) in BINARY_OPTION_VALUES.items():
        changed = {**base, name: other}
        for _ in range(2):  # (the second call finds the first one's options)
            _checks_binary.check_smooth_bce(logits, labels, **arrays, **base)
        _, _, spec = _checks_binary.check_smooth_bce(logits, labels, **arrays, **changed)
        _checks_binary._KNOWN_BINARY_OPTIONS.clear()
        _, _, expected = _checks_binary.check_smooth_bce(logits, labels, **arrays, **changed)
        assert spec == expected, name


def test_the_record_of_known_binary_options_stays_small(backend):
    from lsr import _checks_binary

    logits = np.zeros((2, 3), np.float32)
    for i in range(2 * _checks.KNOWN_OPTIONS_SIZE):  # (one shape, as above)
        _binary_loss(backend, logits, np.zeros((2, 3), np.float32), smoothing=i / 1000)
    assert len(_checks_binary._KNOWN_BINARY_OPTIONS) == _checks.KNOWN_OPTIONS_SIZE
