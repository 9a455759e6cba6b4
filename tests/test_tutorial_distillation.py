"""The distillation section's mutual-information proxy, and its table, without frameworks.

The proxy (``logit_difference_mutual_information``) estimates ``I(X; Y)`` for ``X`` an
example index and ``Y | X = x ~ N(mu_x, s**2)``. Its expected values here come from
elsewhere: the mixture's differential entropy integrated numerically
(``I = h(Y) - h(Y | X)``), the limits ``log N`` and 0, and, for many examples whose
means are Gaussian, the Gaussian channel's ``0.5 log(1 + var(mu) / s**2)``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lsr.tutorial._distillation import (
    check_distillation_options,
    distillation_table,
    logit_difference_mutual_information,
    shifted_copies,
)


def mixture_information(means, sigma):
    """I(X; Y) for X uniform over the means and Y | x ~ N(mu_x, sigma^2), by quadrature:
    h(Y) on a fine grid, minus h(Y | X) = 0.5 log(2 pi e sigma^2)."""
    means = np.asarray(means, dtype=np.float64)
    grid = np.linspace(means.min() - 12 * sigma, means.max() + 12 * sigma, 400_001)
    density = np.mean(
        np.exp(-((grid[:, None] - means[None, :]) ** 2) / (2 * sigma**2)), axis=1
    ) / math.sqrt(2 * math.pi * sigma**2)
    integrand = np.where(density > 0, -density * np.log(np.where(density > 0, density, 1)), 0)
    entropy = float(np.sum((integrand[1:] + integrand[:-1]) / 2 * np.diff(grid)))
    return entropy - 0.5 * math.log(2 * math.pi * math.e * sigma**2)


def draw(means, sigma, copies, seed=0):
    rng = np.random.default_rng(seed)
    means = np.asarray(means, dtype=np.float64)
    return means[:, None] + sigma * rng.standard_normal((len(means), copies))


@pytest.mark.parametrize(
    ("means", "sigma"),
    [
        ([-1.0, 1.0], 1.0),  # two overlapping examples: well below log 2
        ([-3.0, -1.0, 0.5, 0.7, 3.0, 6.0], 1.0),
        ([0.0, 0.4, 0.8, 1.2], 2.0),  # mostly noise
    ],
)
def test_matches_the_mixture_information(means, sigma):
    expected = mixture_information(means, sigma)
    assert 0.02 < expected < math.log(len(means)) - 0.02  # neither limit
    estimate = logit_difference_mutual_information(draw(means, sigma, copies=40_000))
    assert estimate == pytest.approx(expected, abs=0.01)


def test_many_gaussian_means_give_the_gaussian_channel():
    """Means drawn from N(0, 1), noise variance 1: 0.5 log(1 + 1/1) = 0.347 nats."""
    rng = np.random.default_rng(1)
    means = rng.standard_normal(300)
    estimate = logit_difference_mutual_information(draw(means, 1.0, copies=200))
    channel = 0.5 * math.log(1 + means.var() / 1.0)
    assert estimate == pytest.approx(channel, abs=0.03)
    assert estimate == pytest.approx(mixture_information(means, 1.0), abs=0.01)


def test_limits():
    apart = draw([0.0, 50.0, 100.0, 150.0, 200.0], 1.0, copies=100)
    assert logit_difference_mutual_information(apart) == pytest.approx(math.log(5), abs=1e-9)
    same = draw([2.0] * 5, 1.0, copies=5_000)
    assert abs(logit_difference_mutual_information(same)) < 0.005


def test_invariant_to_affine_maps_of_the_logit_difference():
    samples = draw([-1.0, 0.0, 2.0], 1.0, copies=50)
    value = logit_difference_mutual_information(samples)
    assert logit_difference_mutual_information(-3.0 * samples + 7.0) == pytest.approx(value)
    assert logit_difference_mutual_information(samples.astype(np.float32)) == pytest.approx(
        value, rel=1e-5
    )


@pytest.mark.parametrize(
    ("samples", "error", "received"),
    [
        (np.zeros(5), ValueError, "samples.shape=(5,)"),
        (np.zeros((1, 5)), ValueError, "samples.shape=(1, 5)"),
        (np.zeros((5, 1)), ValueError, "samples.shape=(5, 1)"),
        (np.ones((3, 4), dtype=bool), TypeError, "samples.dtype='bool'"),
        (np.array([[0.0, 1.0], [np.nan, 1.0]]), ValueError, "Received: samples="),
        (np.array([[0.0, 0.0], [1.0, 1.0]]), ValueError, "needs the noise"),
    ],
)
def test_bad_samples_are_refused(samples, error, received):
    with pytest.raises(error, match="samples") as info:
        logit_difference_mutual_information(samples)
    assert received in str(info.value)


def test_shifted_copies_translate_with_zeros_shifted_in():
    x = np.zeros((2, 28, 28, 1), dtype=np.float32)
    x[:, 10, 12, 0] = 1.0
    x[1, 0, 0, 0] = 0.5  # a corner pixel, lost or kept depending on the shift
    copies = shifted_copies(x, 6, 2, np.random.default_rng(0))
    assert copies.shape == (12, 28, 28, 1) and copies.dtype == np.float32
    for index, image in enumerate(copies):
        rows, cols = np.nonzero(image[..., 0] == 1.0)
        assert len(rows) == 1  # each copy holds the digit's pixel, moved
        assert abs(rows[0] - 10) <= 2 and abs(cols[0] - 12) <= 2
        assert np.isin(image, (0.0, 0.5, 1.0)).all()
        if index < 6:
            assert image.sum() == 1.0  # copies of example 0 come first
    moved = {tuple(np.argwhere(image[..., 0] == 1.0)[0]) for image in copies}
    assert len(moved) > 1


@pytest.mark.parametrize(
    ("options", "error", "received"),
    [
        ((0, 4.0, None), ValueError, "distill_seeds=0"),
        ((2.5, 4.0, None), TypeError, "distill_seeds=2.5"),
        ((3, 0.0, None), ValueError, "distill_temperature=0.0"),
        ((3, math.inf, None), ValueError, "distill_temperature=inf"),
        ((3, math.nan, None), ValueError, "distill_temperature=nan"),
        ((3, True, None), TypeError, "distill_temperature=True"),
        ((3, 4.0, 0), ValueError, "distill_student_filters=0"),
    ],
)
def test_bad_options_are_refused(options, error, received):
    with pytest.raises(error) as info:
        check_distillation_options(*options)
    assert received in str(info.value)
    check_distillation_options(3, 4.0, None)
    check_distillation_options(1, 1, 8)


def _summary(values):
    values = np.asarray(values)
    return {"values": list(values), "mean": values.mean(), "std": values.std(ddof=1)}


def test_table_names_the_data_the_scale_and_the_spread():
    runs = {
        "hard": {"teacher_error": [0.04, 0.05], "student_error": [0.06, 0.08],
                 "mutual_information": [3.0, 3.2]},
        "smoothed": {"teacher_error": [0.03, 0.05], "student_error": [0.07, 0.09],
                     "mutual_information": [2.0, 2.4]},
    }  # fmt: skip
    summary = {
        name: {measure: _summary(values) for measure, values in measures.items()}
        for name, measures in runs.items()
    }
    summary["smoothed_minus_hard"] = {
        measure: _summary(np.subtract(runs["smoothed"][measure], runs["hard"][measure]))
        for measure in runs["hard"]
    }
    section = {
        "data": "data: MNIST t10k files only, split in two halves: train a, test b",
        "scale": "5000 training images, 2 epochs, 2 seeds (t10k-only split): a small experiment",
        "label_smoothing": 0.1,
        "temperature": 4.0,
        "teacher_filters": 64,
        "student_filters": 16,
        "seeds": [7, 8],
        "errors_on": "test split [0:5000] (5000 examples)",
        "mutual_information": {"class_pairs": 45, "upper_bound_nats": math.log(100)},
        "summary": summary,
    }
    lines = distillation_table({"jax": section, "torch": section}).splitlines()
    assert lines[0] == section["data"] and lines[1] == ""
    assert lines[2].startswith("| backend | teacher | teacher error | student error |")
    assert "| jax | hard targets | 0.0450 ± 0.0071 | 0.0700 ± 0.0141 | 3.100 ± 0.141 |" in lines
    assert "| torch | label smoothing 0.1 | 0.0400 ± 0.0141 |" in "\n".join(lines)
    # Paired differences: teachers' errors -0.01 and 0, students' +0.01 twice.
    assert "| jax | smoothing - hard (paired) | -0.0050 ± 0.0071 | +0.0100 ± 0.0000 |" in (
        "\n".join(lines)
    )
    caption = lines[-1]
    assert "t10k-only split" in caption and "small experiment" in caption
    assert "seeds 7, 8" in caption and "T=4" in caption and "4.61" in caption
