"""The generic distillation loss on every selected backend, against a plain float64 reference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lsr._distill import distill_loss
from tests.backends import assert_close

K = 5


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def reference_distill(
    student, teacher, temperature, *, axis=-1, kl=False, where=None, reduction="mean"
):
    """T^2 * sum_k -p_k log q_k (minus sum_k -p_k log p_k for the KL form), per position."""
    s = np.moveaxis(np.asarray(student, dtype=np.float64), axis, -1)
    t = np.moveaxis(np.asarray(teacher, dtype=np.float64), axis, -1)
    p = _softmax(t / temperature)
    q = _softmax(s / temperature)
    loss = np.zeros(p.shape[:-1])
    for index in np.ndindex(loss.shape):
        for k in range(p.shape[-1]):
            loss[index] -= p[index][k] * np.log(q[index][k])
            if kl:
                loss[index] += p[index][k] * np.log(p[index][k])
    loss *= temperature**2
    keep = np.ones(loss.shape, bool) if where is None else np.asarray(where)
    loss = np.where(keep, loss, 0.0)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / keep.sum() if keep.sum() else 0.0


LAYOUTS = [((6, K), -1), ((2, K, 3), 1), ((K,), 0)]
CONFIGS = list(itertools.product(LAYOUTS, [0.5, 1.0, 4.0], [False, True], ["mean", "sum", "none"]))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("layout", "temperature", "kl", "reduction"), CONFIGS)
def test_matches_reference(backend, dtype, layout, temperature, kl, reduction):
    shape, axis = layout
    rng = np.random.default_rng(len(shape))
    student = rng.normal(scale=2.0, size=shape).astype(dtype)
    teacher = rng.normal(scale=3.0, size=shape).astype(dtype)
    expected = reference_distill(
        student, teacher, temperature, axis=axis, kl=kl, reduction=reduction
    )
    actual = distill_loss(
        backend.asarray(student),
        backend.asarray(teacher),
        temperature=temperature,
        axis=axis,
        kl=kl,
        reduction=reduction,
    )
    assert_close(backend.to_numpy(actual), expected, dtype, scale=10.0)


@pytest.mark.parametrize("kl", [False, True])
def test_where_mask(backend, kl):
    rng = np.random.default_rng(3)
    student, teacher = rng.normal(size=(2, 7, K))
    keep = rng.random(7) > 0.4
    expected = reference_distill(student, teacher, 2.0, kl=kl, where=keep)
    actual = distill_loss(
        backend.asarray(student),
        backend.asarray(teacher),
        temperature=2.0,
        kl=kl,
        where=backend.asarray(keep),
    )
    assert_close(backend.to_numpy(actual), expected, "float64")
    nothing = distill_loss(
        backend.asarray(student),
        backend.asarray(teacher),
        temperature=2.0,
        where=backend.asarray(np.zeros(7, bool)),
    )
    assert float(backend.to_numpy(nothing)) == 0.0


def test_kl_form_is_zero_at_the_teacher_and_positive_elsewhere(backend):
    rng = np.random.default_rng(8)
    teacher = rng.normal(scale=2.0, size=(4, K))
    same = distill_loss(
        backend.asarray(teacher),
        backend.asarray(teacher),
        temperature=3.0,
        kl=True,
        reduction="none",
    )
    assert_close(backend.to_numpy(same), np.zeros(4), "float64")
    # A shift of the student's logits per row changes nothing.
    shifted = distill_loss(
        backend.asarray(teacher + rng.normal(size=(4, 1))),
        backend.asarray(teacher),
        temperature=3.0,
        kl=True,
        reduction="none",
    )
    assert_close(backend.to_numpy(shifted), np.zeros(4), "float64")
    other = distill_loss(
        backend.asarray(rng.normal(size=(4, K))),
        backend.asarray(teacher),
        temperature=3.0,
        kl=True,
        reduction="none",
    )
    assert np.all(backend.to_numpy(other) > 0)


def test_temperature_as_array(backend):
    rng = np.random.default_rng(1)
    student, teacher = rng.normal(size=(2, 3, K))
    as_float = distill_loss(backend.asarray(student), backend.asarray(teacher), temperature=2.5)
    as_array = distill_loss(
        backend.asarray(student), backend.asarray(teacher), temperature=backend.asarray(2.5)
    )
    assert_close(backend.to_numpy(as_array), backend.to_numpy(as_float), "float64")


@pytest.fixture
def pair(backend):
    return backend, backend.asarray(np.zeros((3, K))), backend.asarray(np.ones((3, K)))


@pytest.mark.parametrize(
    ("options", "error", "pattern"),
    [
        ({"temperature": 0.0}, ValueError, r"finite and > 0.*Received: temperature=0.0"),
        ({"temperature": -2.0}, ValueError, r"Received: temperature=-2.0"),
        ({"temperature": float("inf")}, ValueError, r"Received: temperature=inf"),
        ({"temperature": float("nan")}, ValueError, r"Received: temperature=nan"),
        ({"temperature": True}, TypeError, r"Received: temperature=True"),
        ({"temperature": "2"}, TypeError, r"positive number.*Received: temperature='2'"),
        ({"temperature": 1.0, "reduction": "avg"}, ValueError, r"Received: reduction='avg'"),
        ({"temperature": 1.0, "axis": 3}, ValueError, r"Received: axis=3"),
        ({"temperature": 1.0, "kl": "yes"}, TypeError, r"Received: kl='yes'"),
    ],
)
def test_bad_options(pair, options, error, pattern):
    _, student, teacher = pair
    with pytest.raises(error, match=pattern):
        distill_loss(student, teacher, **options)


def test_bad_arrays(pair):
    backend, student, teacher = pair
    with pytest.raises(
        ValueError, match=r"`teacher_logits` must have the student's shape \(3, 5\)"
    ):
        distill_loss(student, backend.asarray(np.ones((3, K + 1))), temperature=1.0)
    with pytest.raises(TypeError, match=r"`student_logits` must have a real floating dtype"):
        distill_loss(backend.asarray(np.zeros((3, K), int)), teacher, temperature=1.0)
    with pytest.raises(ValueError, match=r"`where` must be a boolean mask of shape \(3,\)"):
        distill_loss(student, teacher, temperature=1.0, where=backend.asarray(np.ones(3)))
    with pytest.raises(ValueError, match=r"Received: temperature=-1.0"):
        distill_loss(student, teacher, temperature=backend.asarray(-1.0))
