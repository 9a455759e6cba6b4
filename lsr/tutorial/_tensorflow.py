"""The tutorial's network, training step and FGSM in TensorFlow: Keras layers, a Keras
optimizer and ``tf.GradientTape`` steps compiled with ``tf.function``."""

from __future__ import annotations

from typing import Any, cast

import keras
import numpy as np
import tensorflow as tf

import lsr
from lsr.tensorflow import distill_loss, smooth_ce
from lsr.tutorial._driver import FGSM_PARAMS, IMAGE_SHAPE


def versions() -> dict[str, str]:
    return {"tensorflow": tf.__version__, "keras": keras.__version__, "device": "cpu"}


def _check_keras_backend() -> None:
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "The tutorial's TensorFlow backend needs Keras running on TensorFlow. "
            f"Received: KERAS_BACKEND={keras.backend.backend()!r}"
        )


def basic_cnn(params: dict[str, np.ndarray]) -> tuple[keras.Model, keras.Model]:
    """cleverhans' ``ModelBasicCNN`` as a functional Keras model, and the model of its
    penultimate features (sharing the same layers)."""
    layers = keras.layers
    conv = {
        name: layers.Conv2D(
            params[f"{name}/kernel"].shape[-1],
            params[f"{name}/kernel"].shape[:2],
            strides=strides,
            padding=padding,
            activation="relu",
            name=name,
        )
        for name, strides, padding in (
            ("conv1", 2, "same"),
            ("conv2", 2, "valid"),
            ("conv3", 1, "valid"),
        )
    }
    dense = layers.Dense(params["dense/kernel"].shape[-1], name="dense")
    inputs = keras.Input(IMAGE_SHAPE)
    features = layers.Flatten()(conv["conv3"](conv["conv2"](conv["conv1"](inputs))))
    logits = dense(features)
    for name, layer in (*conv.items(), ("dense", dense)):
        layer.set_weights([params[f"{name}/kernel"], params[f"{name}/bias"]])
    return keras.Model(inputs, logits, name="basic_cnn"), keras.Model(inputs, features)


def fgsm(model: keras.Model, x: tf.Tensor, attack_loss_fn: Any = smooth_ce) -> tf.Tensor:
    """x + eps * sign(grad_x CE(model(x), argmax model(x))), clipped (cleverhans' ``fgm``
    with ``y=None``)."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = model(x, training=False)
        predictions = tf.argmax(tf.stop_gradient(logits), axis=-1)
        attack_loss = attack_loss_fn(
            logits, predictions, smoothing=0.0, prior="uniform", reduction="sum"
        )
    # (A dense tensor's gradient is a dense tf.Tensor, not IndexedSlices.)
    gradient = cast(tf.Tensor, tape.gradient(attack_loss, x))
    adversarial = x + FGSM_PARAMS["eps"] * tf.sign(gradient)
    return tf.clip_by_value(adversarial, FGSM_PARAMS["clip_min"], FGSM_PARAMS["clip_max"])


class Trainer:
    loss_name = "lsr.tensorflow.smooth_ce"

    def __init__(
        self,
        params: dict[str, np.ndarray],
        *,
        learning_rate: float,
        label_smoothing: float,
        prior: str,
        backprop_through_attack: bool,
        seed: int,
    ) -> None:
        _check_keras_backend()
        # Same seed, same report: TensorFlow's CPU kernels may otherwise pick
        # nondeterministic reduction orders.
        tf.config.experimental.enable_op_determinism()
        keras.utils.set_random_seed(seed)
        self.model, self.feature_model = basic_cnn(params)
        # tf.train.AdamOptimizer's defaults, which cleverhans used (Keras' epsilon is 1e-7).
        self.optimizer = keras.optimizers.Adam(
            learning_rate=learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8
        )
        self.optimizer.build(self.model.trainable_variables)
        model = self.model

        # lsr.tensorflow.smooth_ce registers a first-order custom gradient; differentiating
        # through the attack needs the attack's gradient differentiated again, which the
        # generic lsr.smooth_ce (plain TensorFlow ops, TF's own autodiff) allows. It has no
        # tensor-dependent Python control flow, so autograph need not rewrite it.
        generic = tf.autograph.experimental.do_not_convert(lsr.smooth_ce)
        attack_loss_fn = generic if backprop_through_attack else smooth_ce

        def loss_fn(x, y, adversarial):
            loss = smooth_ce(model(x, training=True), y, smoothing=label_smoothing, prior=prior)
            if adversarial:
                x_adv = fgsm(model, x, attack_loss_fn)
                if not backprop_through_attack:
                    x_adv = tf.stop_gradient(x_adv)
                adv_loss = smooth_ce(
                    model(x_adv, training=True), y, smoothing=label_smoothing, prior=prior
                )
                loss = 0.5 * loss + 0.5 * adv_loss
            return loss

        def make_step(adversarial):
            @tf.function(reduce_retracing=True)
            def step(x, y):
                with tf.GradientTape() as tape:
                    loss = loss_fn(x, y, adversarial)
                variables = model.trainable_variables
                gradients = tape.gradient(loss, variables)
                self.optimizer.apply_gradients(zip(gradients, variables, strict=True))
                return loss

            return step

        self._steps = {False: make_step(False), True: make_step(True)}

        # The temperature is a Python float: one trace per temperature used.
        @tf.function(reduce_retracing=True)
        def distill_step(x, teacher_logits, temperature):
            with tf.GradientTape() as tape:
                loss = distill_loss(
                    model(x, training=True), teacher_logits, temperature=temperature
                )
            variables = model.trainable_variables
            gradients = tape.gradient(loss, variables)
            self.optimizer.apply_gradients(zip(gradients, variables, strict=True))
            return loss

        self._distill_step = distill_step
        self._logits = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        self._features = tf.function(
            lambda x: self.feature_model(x, training=False), reduce_retracing=True
        )
        self._fgsm = tf.function(lambda x: fgsm(model, x), reduce_retracing=True)

    def train_step(self, x: np.ndarray, y: np.ndarray, adversarial: bool) -> Any:
        return self._steps[adversarial](tf.constant(x), tf.constant(y))

    def distill_step(self, x: np.ndarray, teacher_logits: np.ndarray, temperature: float) -> Any:
        return self._distill_step(tf.constant(x), tf.constant(teacher_logits), temperature)

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self._logits(tf.constant(x)).numpy()

    def features(self, x: np.ndarray) -> np.ndarray:
        return self._features(tf.constant(x)).numpy()

    def fgsm(self, x: np.ndarray) -> np.ndarray:
        return self._fgsm(tf.constant(x)).numpy()

    def dense_kernel(self) -> np.ndarray:
        return self.model.get_layer("dense").kernel.numpy()


def create(params: dict[str, np.ndarray], **options: Any) -> Trainer:
    return Trainer(params, **options)
