"""lsr.keras.SmoothCrossEntropy saved in a ``.keras`` file and loaded in a fresh process.

A model compiled with the loss is saved here; a new interpreter that imports only keras
and ``lsr.keras`` loads it without ``custom_objects`` and reports the loss's config and
its value on inputs this test wrote. A second interpreter that does not import
``lsr.keras`` must fail to load it: that shows the first check depends on the
registration, not on something else that happens to make the class known.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from lsr.keras import SmoothCrossEntropy
from tests.backends import assert_close

REPOSITORY = Path(__file__).resolve().parents[2]
K = 5
PRIOR = [0.1, 0.3, 0.2, 0.25, 0.15]

# Every constructor argument away from its default, so that a setting the config drops
# shows up as a different config or value after loading.
OPTIONS = dict(
    from_logits=True,
    label_smoothing=0.2,
    axis=-1,
    reduction="sum",
    name="lsr_loss",
    dtype="float64",
    prior=PRIOR,
    ignore_class=-1,
)

LOAD = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import keras
    {import_lsr}

    model = keras.models.load_model(sys.argv[1])
    inputs = np.load(sys.argv[2])
    loss = model.loss
    value = loss(inputs["labels"], inputs["logits"])
    evaluated = model.evaluate(inputs["x"], inputs["labels"], batch_size=4, verbose=0)
    print(json.dumps({{
        "class": f"{{type(loss).__module__}}.{{type(loss).__qualname__}}",
        "config": loss.get_config(),
        "value": float(keras.ops.convert_to_numpy(value)),
        "evaluate": float(evaluated),
    }}))
    """
)


def _inputs(seed=0, n=8):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, K, size=n)
    labels[::3] = OPTIONS["ignore_class"]
    return {
        "logits": rng.normal(scale=2.0, size=(n, K)).astype(np.float32),
        "labels": labels,
        "x": rng.normal(size=(n, 3)).astype(np.float32),
    }


def _load_in_fresh_process(model_path, inputs_path, *, import_lsr):
    script = LOAD.format(import_lsr="import lsr.keras" if import_lsr else "")
    environment = dict(os.environ, KERAS_BACKEND=keras.backend.backend(), TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-c", script, str(model_path), str(inputs_path)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=REPOSITORY,
    )


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A compiled model saved as .keras, the inputs, and what this process computes."""
    directory = tmp_path_factory.mktemp("keras_saving")
    keras.utils.set_random_seed(0)
    loss = SmoothCrossEntropy(**OPTIONS)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(K)])
    model.compile(optimizer="sgd", loss=loss)
    model_path = directory / "model.keras"
    model.save(model_path)
    inputs = _inputs()
    inputs_path = directory / "inputs.npz"
    np.savez(inputs_path, **inputs)
    expected = {
        "config": loss.get_config(),
        "value": float(loss(inputs["labels"], inputs["logits"])),
        "evaluate": float(model.evaluate(inputs["x"], inputs["labels"], batch_size=4, verbose=0)),
    }
    return model_path, inputs_path, expected


def test_saved_model_loads_after_importing_lsr_keras(saved):
    model_path, inputs_path, expected = saved
    result = _load_in_fresh_process(model_path, inputs_path, import_lsr=True)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["class"] == "lsr.keras.SmoothCrossEntropy"
    assert loaded["config"] == expected["config"]
    # The settings really reached the loaded loss (not only its config): the prior, the
    # smoothing, the ignored class and the "sum" reduction all change this number.
    assert_close(loaded["value"], expected["value"], "float64")
    assert_close(loaded["evaluate"], expected["evaluate"], "float32")


def test_loading_without_importing_lsr_keras_fails(saved):
    model_path, inputs_path, _ = saved
    result = _load_in_fresh_process(model_path, inputs_path, import_lsr=False)
    assert result.returncode != 0, result.stdout[-3000:]
    assert "Could not locate class 'SmoothCrossEntropy'" in result.stderr, result.stderr[-3000:]


def test_the_registered_name_is_in_the_lsr_package():
    assert keras.saving.get_registered_name(SmoothCrossEntropy) == "lsr>SmoothCrossEntropy"
    assert keras.saving.get_registered_object("lsr>SmoothCrossEntropy") is SmoothCrossEntropy


def test_config_holds_every_constructor_argument():
    parameters = set(inspect.signature(SmoothCrossEntropy.__init__).parameters) - {"self"}
    assert set(SmoothCrossEntropy().get_config()) == parameters


@pytest.mark.parametrize(
    "prior",
    [
        pytest.param(PRIOR, id="list"),
        pytest.param(np.array(PRIOR), id="numpy"),
        pytest.param(tf.constant(PRIOR, dtype=tf.float64), id="tensor"),
        pytest.param("others", id="name"),
    ],
)
@pytest.mark.parametrize(
    "dtype",
    [None, "float64", pytest.param(keras.DTypePolicy("mixed_float16"), id="mixed_float16")],
)
def test_from_config_round_trips_every_argument(prior, dtype):
    options = dict(OPTIONS, prior=prior, dtype=dtype, reduction=None, axis=1)
    loss = SmoothCrossEntropy(**options)
    config = loss.get_config()
    json.dumps(config)  # what a .keras file stores
    restored = SmoothCrossEntropy.from_config(json.loads(json.dumps(config)))
    assert restored.get_config() == config
    for name in ("from_logits", "label_smoothing", "axis", "reduction", "name", "ignore_class"):
        assert getattr(restored, name) == options[name], name
    expected_prior = prior if isinstance(prior, str) else np.asarray(prior, np.float64).tolist()
    assert restored.prior == expected_prior
    assert config["dtype"] == (dtype if dtype is None or isinstance(dtype, str) else dtype.name)
    assert restored.dtype == loss.dtype
    logits, labels = _inputs(seed=1)["logits"], _inputs(seed=1)["labels"]
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(restored(labels, logits)),
        keras.ops.convert_to_numpy(loss(labels, logits)),
    )
