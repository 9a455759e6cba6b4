"""Keras: from_logits=True on a softmax output warns, as Keras' own cross-entropies do."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest

from lsr.keras import SmoothCrossEntropy


def test_from_logits_on_a_softmax_output_warns():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    x = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    y = np.arange(8) % 3
    probabilities = model(x)
    with pytest.warns(UserWarning, match=r"from_logits=True.*softmax.*Remove the softmax"):
        SmoothCrossEntropy(from_logits=True, label_smoothing=0.1)(y, probabilities)
    logits_model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SmoothCrossEntropy(from_logits=True, label_smoothing=0.1)(y, logits_model(x))
