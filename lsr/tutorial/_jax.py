"""The tutorial's network, training step and FGSM in JAX: flax NNX and optax."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from lsr.jax import distill_loss, smooth_ce
from lsr.tutorial._driver import FGSM_PARAMS, NUM_CLASSES


def versions() -> dict[str, str]:
    import flax

    return {
        "jax": jax.__version__,
        "flax": flax.__version__,
        "optax": optax.__version__,
        "device": str(jax.devices()[0]),
    }


def _given(array: np.ndarray):
    """An initializer returning the driver's initial values (shared by every backend)."""

    def init(key, shape, dtype=jnp.float32):
        assert tuple(shape) == array.shape, (shape, array.shape)
        return jnp.asarray(array, dtype=dtype)

    return init


_BLOCK = 2  # conv2's stride


def space_to_depth(x: jax.Array, block: int) -> jax.Array:
    """(N, H, W, C) -> (N, H/b, W/b, b*b*C): [n, i, j, (r, s, c)] = x[n, b i + r, b j + s, c]."""
    n, height, width, channels = x.shape
    x = x.reshape(n, height // block, block, width // block, block, channels)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(
        n, height // block, width // block, block * block * channels
    )


def blocked_kernel(kernel: np.ndarray, block: int) -> np.ndarray:
    """A (kh, kw, C, O) kernel of stride ``block`` as the (kh/b, kw/b, b*b*C, O) kernel of
    the stride-1 convolution of ``space_to_depth(x, block)``."""
    height, width, channels, outputs = kernel.shape
    kernel = kernel.reshape(height // block, block, width // block, block, channels, outputs)
    return kernel.transpose(0, 2, 1, 3, 4, 5).reshape(
        height // block, width // block, block * block * channels, outputs
    )


class BasicCNN(nnx.Module):
    """cleverhans' ``ModelBasicCNN`` (NHWC, as in TensorFlow)."""

    def __init__(self, params: dict[str, np.ndarray], *, rngs: nnx.Rngs) -> None:
        def conv(name, strides, padding):
            kernel = params[f"{name}/kernel"]
            height, width, channels_in, channels_out = kernel.shape
            return nnx.Conv(
                channels_in,
                channels_out,
                (height, width),
                strides=strides,
                padding=padding,
                kernel_init=_given(kernel),
                bias_init=_given(params[f"{name}/bias"]),
                rngs=rngs,
            )

        self.conv1 = conv("conv1", 2, "SAME")
        # conv2 (6x6, stride 2, "valid") is computed as the identical stride-1 3x3
        # convolution of the 2x2 space-to-depth input: XLA:CPU takes a slow generic path
        # for the input gradient of a strided convolution (50 times the forward pass
        # here), while this form stays on its fast path. Same numbers, same parameters.
        params = dict(params)
        params["conv2/kernel"] = blocked_kernel(params["conv2/kernel"], _BLOCK)
        self.conv2 = conv("conv2", 1, "VALID")
        self.conv3 = conv("conv3", 1, "VALID")
        kernel = params["dense/kernel"]
        self.dense = nnx.Linear(
            kernel.shape[0],
            NUM_CLASSES,
            kernel_init=_given(kernel),
            bias_init=_given(params["dense/bias"]),
            rngs=rngs,
        )

    def features(self, x: jax.Array) -> jax.Array:
        x = nnx.relu(self.conv1(x))
        x = nnx.relu(self.conv2(space_to_depth(x, _BLOCK)))
        x = nnx.relu(self.conv3(x))
        return x.reshape(x.shape[0], -1)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.dense(self.features(x))


def fgsm(model: BasicCNN, x: jax.Array) -> jax.Array:
    """x + eps * sign(grad_x CE(model(x), argmax model(x))), clipped (cleverhans' ``fgm``
    with ``y=None``: the model's predictions are the labels, so no true label leaks)."""

    def attack_loss(inputs):
        logits = model(inputs)
        predictions = jnp.argmax(jax.lax.stop_gradient(logits), axis=-1)
        return smooth_ce(logits, predictions, smoothing=0.0, prior="uniform", reduction="sum")

    gradient = jax.grad(attack_loss)(x)
    adversarial = x + FGSM_PARAMS["eps"] * jnp.sign(gradient)
    return jnp.clip(adversarial, FGSM_PARAMS["clip_min"], FGSM_PARAMS["clip_max"])


class Trainer:
    loss_name = "lsr.jax.smooth_ce"

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
        self.model = BasicCNN(params, rngs=nnx.Rngs(seed))
        # tf.train.AdamOptimizer's defaults, which cleverhans used.
        self.optimizer = nnx.Optimizer(
            self.model, optax.adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8), wrt=nnx.Param
        )

        def loss_fn(model, x, y, adversarial):
            # The batch mean, as cleverhans' loss (lsr.jax returns per-example losses).
            loss = smooth_ce(model(x), y, smoothing=label_smoothing, prior=prior, reduction="mean")
            if adversarial:
                x_adv = fgsm(model, x)
                if not backprop_through_attack:
                    x_adv = jax.lax.stop_gradient(x_adv)
                adv_loss = smooth_ce(
                    model(x_adv), y, smoothing=label_smoothing, prior=prior, reduction="mean"
                )
                loss = 0.5 * loss + 0.5 * adv_loss
            return loss

        @nnx.jit(static_argnames="adversarial")
        def step(model, optimizer, x, y, adversarial):
            loss, grads = nnx.value_and_grad(loss_fn)(model, x, y, adversarial)
            optimizer.update(model, grads)
            return loss

        @nnx.jit(static_argnames="temperature")
        def distill_step(model, optimizer, x, teacher_logits, temperature):
            def distill_fn(model):
                return distill_loss(
                    model(x), teacher_logits, temperature=temperature, reduction="mean"
                )

            loss, grads = nnx.value_and_grad(distill_fn)(model)
            optimizer.update(model, grads)
            return loss

        self._step = step
        self._distill_step = distill_step
        self._logits = nnx.jit(lambda model, x: model(x))
        self._features = nnx.jit(lambda model, x: model.features(x))
        self._fgsm = nnx.jit(fgsm)

    def train_step(self, x: np.ndarray, y: np.ndarray, adversarial: bool) -> Any:
        return self._step(self.model, self.optimizer, jnp.asarray(x), jnp.asarray(y), adversarial)

    def distill_step(self, x: np.ndarray, teacher_logits: np.ndarray, temperature: float) -> Any:
        return self._distill_step(
            self.model, self.optimizer, jnp.asarray(x), jnp.asarray(teacher_logits), temperature
        )

    def logits(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._logits(self.model, jnp.asarray(x)))

    def features(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._features(self.model, jnp.asarray(x)))

    def fgsm(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._fgsm(self.model, jnp.asarray(x)))

    def dense_kernel(self) -> np.ndarray:
        return np.asarray(self.model.dense.kernel[...])


def create(params: dict[str, np.ndarray], **options: Any) -> Trainer:
    return Trainer(params, **options)
