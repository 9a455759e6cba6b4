"""The MNIST tutorial end to end on JAX, PyTorch and TensorFlow (integration tests).

Collected only in sessions that select at least two backends (tests/conftest.py), and
defined only for the frameworks the session selects, so a session without them has
nothing here rather than skips. Data: the real MNIST files in ``LSR_MNIST_DIR`` when CI
provides them (only ``t10k-*``: the tutorial then trains on t10k[0:5000] and tests on
t10k[5000:10000]); without them the loader's offline fallback (scikit-learn's digits).
Nothing is downloaded.
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
import pytest

from lsr.tutorial import mnist_tutorial
from lsr.tutorial._distillation import distillation_section
from lsr.tutorial._driver import backend_module, initial_params, run_tutorial
from lsr.tutorial.data import load_mnist
from tests.backends import selected_backends
from tests.reference import log_softmax

FRAMEWORKS = tuple(name for name in ("jax", "torch", "tensorflow") if name in selected_backends())


@pytest.fixture(scope="module")
def digits():
    """The tutorial's data, loaded once (no download)."""
    return load_mnist(download_missing=False)


def has_real_mnist(data) -> bool:
    return data.source.startswith("mnist")


if FRAMEWORKS:

    @pytest.mark.parametrize("framework", FRAMEWORKS)
    def test_small_slice_learns_and_fgsm_hurts(framework, digits):
        """1,000 training images, 1 epoch: well above chance (10%), and FGSM with eps 0.3
        takes most of it away from the clean model."""
        run = run_tutorial(
            framework, train_end=1000, test_end=500, nb_epochs=1, download=False, data=digits
        )
        report = run.report
        assert report.loss == f"lsr.{framework}.smooth_ce"
        # cleverhans v3.1.0's default: CrossEntropy(model, smoothing=0.1), uniform prior.
        assert report.prior == "uniform" and report.label_smoothing == 0.1
        assert report.data_source == digits.source
        assert report.clean_train_clean_eval > 0.6, report.accuracies()
        assert report.adv_train_clean_eval > 0.5, report.accuracies()
        assert report.clean_train_adv_eval < report.clean_train_clean_eval - 0.3
        assert report.train_clean_train_clean_eval is None  # testing=False
        assert np.isfinite(report.epoch_losses["adv_train"]).all()

    @pytest.mark.parametrize("framework", FRAMEWORKS)
    def test_same_seed_same_report(framework, digits):
        options = dict(
            train_end=256, test_end=128, nb_epochs=1, nb_filters=8, testing=True, data=digits
        )
        first = run_tutorial(framework, **options).report
        second = run_tutorial(framework, **options).report
        assert first.accuracies() == second.accuracies()
        assert first.epoch_losses == second.epoch_losses
        other = run_tutorial(framework, seed=1, **options).report
        assert other.epoch_losses != first.epoch_losses  # the seed does something

    @pytest.mark.parametrize("framework", FRAMEWORKS)
    def test_backprop_through_attack_does_not_change_fgsm_training(framework, digits):
        """cleverhans: FGSM's sign has zero gradient, so the flag cannot change training."""
        options = dict(train_end=256, test_end=128, nb_epochs=1, nb_filters=8, data=digits)
        plain = run_tutorial(framework, clean_train=False, **options).report
        through = run_tutorial(
            framework, clean_train=False, backprop_through_attack=True, **options
        ).report
        np.testing.assert_allclose(
            through.epoch_losses["adv_train"], plain.epoch_losses["adv_train"], rtol=1e-5
        )

    @pytest.mark.parametrize("framework", FRAMEWORKS)
    def test_distill_step_is_hintons_loss(framework):
        """A student's step on the adapter's distill_loss: T**2 times the cross-entropy of
        softmax(teacher / T) against softmax(student / T), the batch's mean (from the
        student's logits before the step, in float64); further steps lower it."""
        student = backend_module(framework).create(
            initial_params(0, 3, 4),
            learning_rate=1e-3,
            label_smoothing=0.0,
            prior="uniform",
            backprop_through_attack=False,
            seed=0,
        )
        rng = np.random.default_rng(0)
        x = rng.uniform(size=(16, 28, 28, 1)).astype(np.float32)
        teacher = (3 * rng.standard_normal((16, 10))).astype(np.float32)
        temperature = 3.0
        soft_targets = np.exp(log_softmax(teacher / temperature))
        log_student = log_softmax(student.logits(x).astype(np.float64) / temperature)
        expected = temperature**2 * np.mean(-np.sum(soft_targets * log_student, axis=1))
        first = float(student.distill_step(x, teacher, temperature))
        assert first == pytest.approx(expected, rel=1e-4)
        for _ in range(10):
            last = float(student.distill_step(x, teacher, temperature))
        assert last < first

    @pytest.mark.parametrize("framework", FRAMEWORKS)
    def test_distillation_section_on_a_small_slice(framework, digits):
        run = run_tutorial(
            framework,
            train_end=256,
            test_end=128,
            nb_epochs=1,
            nb_filters=8,
            adv_train=False,
            data=digits,
        )
        section = distillation_section(run, seeds=2, student_filters=4)
        assert section["loss"].startswith(f"lsr.{framework}.distill_loss")
        assert section["seeds"] == [run.report.settings["seed"] + i for i in range(2)]
        bound = section["mutual_information"]["upper_bound_nats"]
        assert 0 < bound <= math.log(256)
        for result in section["runs"]:
            for name in ("hard", "smoothed"):
                assert 0 <= result[name]["teacher_error"] <= 1
                assert 0 <= result[name]["student_error"] <= 1
                assert -0.1 < result[name]["mutual_information"] <= bound + 1e-9
        for name in ("hard", "smoothed", "smoothed_minus_hard"):
            for entry in section["summary"][name].values():
                assert len(entry["values"]) == 2 and np.isfinite(entry["values"]).all()
        # The first seed's label-smoothed teacher is the tutorial's clean model, and
        # training it afresh gives the same model (the same weights, batches, targets).
        first = section["runs"][0]["smoothed"]
        assert first["teacher_error"] == pytest.approx(1 - run.report.clean_train_clean_eval)
        afresh = distillation_section(dataclasses.replace(run, clean_model=None), seeds=1)
        assert afresh["runs"][0]["smoothed"]["teacher_error"] == first["teacher_error"]


if len(FRAMEWORKS) >= 2:

    def test_backends_run_the_same_experiment(digits):
        """Same initial weights and batches: the first epoch's mean losses agree closely
        across frameworks (they differ only by floating-point arithmetic). Adversarial
        training agrees less tightly: FGSM takes the sign of the input gradient, which
        flips between frameworks for pixels whose gradient is a rounding error from 0."""
        options = dict(train_end=512, test_end=128, nb_epochs=1, nb_filters=16, data=digits)
        losses = {name: run_tutorial(name, **options).report.epoch_losses for name in FRAMEWORKS}
        first = losses[FRAMEWORKS[0]]
        for name in FRAMEWORKS[1:]:
            np.testing.assert_allclose(losses[name]["clean_train"], first["clean_train"], rtol=1e-4)
            np.testing.assert_allclose(losses[name]["adv_train"], first["adv_train"], rtol=2e-3)


# cleverhans' own test of its tutorial, tests_tf/test_mnist_tutorial_tf.py (train_end=5000,
# test_end=333, nb_epochs=2, testing=True), as it stood for each of the two target
# conventions lsr reproduces. Only train_clean_train_adv_eval's bound differs.
CLEVERHANS_THRESHOLDS = {
    # v3.1.0 (the version ported; its tutorial trains on CrossEntropy(model,
    # smoothing=0.1), targets y - 0.1 (y - 1/10): prior="uniform").
    "uniform": {"train_clean_train_adv_eval": 0.05},
    # Dec 2017 (commit ae63eb83, unchanged up to v2.1.0; its tutorial trained on
    # Y_train.clip(0.1 / 9, 0.9): prior="others").
    "others": {"train_clean_train_adv_eval": 0.036},
}


if FRAMEWORKS and os.environ.get("LSR_MNIST_DIR"):
    # The tutorial's prior ("uniform") on every framework; the older prior on PyTorch,
    # the quickest here (each run is 40-90 s of CI; the frameworks' losses, gradients and
    # tutorial steps are equal by the other tests of this file).
    CLEVERHANS_RUNS = [(framework, "uniform") for framework in FRAMEWORKS] + [
        (framework, "others") for framework in FRAMEWORKS if framework == "torch"
    ]

    @pytest.mark.slow
    @pytest.mark.parametrize(("framework", "prior"), CLEVERHANS_RUNS)
    def test_cleverhans_thresholds_on_5000_t10k_images(framework, prior, digits):
        """cleverhans' own test, with the bounds of the version whose targets are used.

        Both versions assert train_clean_train_clean_eval > 0.97,
        train_adv_train_clean_eval > 0.93 and train_adv_train_adv_eval > 0.4; for
        train_clean_train_adv_eval, v3.1.0 asserts < 0.05 and the Dec-2017 test < 0.036.
        """
        assert has_real_mnist(digits), (
            f"LSR_MNIST_DIR={os.environ['LSR_MNIST_DIR']!r} holds no MNIST files; "
            f"the loader fell back to {digits.source}"
        )
        report = mnist_tutorial(
            framework,
            train_end=5000,
            test_end=333,
            nb_epochs=2,
            testing=True,
            prior=prior,
            download=False,
        )
        assert report.data["train_used"].endswith("(5000 examples)")
        adv_bound = CLEVERHANS_THRESHOLDS[prior]["train_clean_train_adv_eval"]
        assert report.train_clean_train_clean_eval > 0.97, report.accuracies()
        assert report.train_clean_train_adv_eval < adv_bound, report.accuracies()
        assert report.train_adv_train_clean_eval > 0.93, report.accuracies()
        assert report.train_adv_train_adv_eval > 0.4, report.accuracies()
