"""The tutorial's network, training step and FGSM in PyTorch: torch.nn and torch.optim."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from lsr.torch import distill_loss, smooth_ce
from lsr.tutorial._driver import FGSM_PARAMS, IMAGE_SHAPE


def versions() -> dict[str, str]:
    return {"torch": torch.__version__, "device": "cpu", "threads": str(torch.get_num_threads())}


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "same" padding (before, after) for one spatial dimension."""
    output = -(-size // stride)
    total = max((output - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class BasicCNN(nn.Module):
    """cleverhans' ``ModelBasicCNN`` in NCHW, with TensorFlow's "same" padding made explicit
    (PyTorch's ``padding="same"`` does not allow strides)."""

    def __init__(self, params: dict[str, np.ndarray]) -> None:
        super().__init__()
        kernel1 = params["conv1/kernel"]
        top, bottom = _same_padding(IMAGE_SHAPE[0], kernel1.shape[0], 2)
        left, right = _same_padding(IMAGE_SHAPE[1], kernel1.shape[1], 2)
        self.pad1 = nn.ZeroPad2d((left, right, top, bottom))
        self.conv1 = self._conv(params, "conv1", stride=2)
        self.conv2 = self._conv(params, "conv2", stride=2)
        self.conv3 = self._conv(params, "conv3", stride=1)
        kernel = params["dense/kernel"]
        self.dense = nn.Linear(kernel.shape[0], kernel.shape[1])
        with torch.no_grad():
            # The driver's kernels are (in, out); torch.nn.Linear stores (out, in).
            self.dense.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.T)))
            self.dense.bias.copy_(torch.from_numpy(params["dense/bias"]))

    @staticmethod
    def _conv(params: dict[str, np.ndarray], name: str, stride: int) -> nn.Conv2d:
        kernel = params[f"{name}/kernel"]  # (height, width, in, out)
        height, width, channels_in, channels_out = kernel.shape
        conv = nn.Conv2d(channels_in, channels_out, (height, width), stride=stride)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))))
            assert conv.bias is not None  # (Optional in nn.Conv2d; made with bias=True)
            conv.bias.copy_(torch.from_numpy(params[f"{name}/bias"]))
        return conv

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(self.pad1(x)))
        x = torch.relu(self.conv2(x))
        x = torch.relu(self.conv3(x))
        return torch.flatten(x, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.features(x))


def fgsm(model: nn.Module, x: torch.Tensor, *, create_graph: bool = False) -> torch.Tensor:
    """x + eps * sign(grad_x CE(model(x), argmax model(x))), clipped (cleverhans' ``fgm``
    with ``y=None``). Only the input's gradient is computed; parameters' ``.grad`` are
    left untouched."""
    x = x if x.requires_grad else x.detach().requires_grad_(True)
    logits = model(x)
    predictions = logits.detach().argmax(dim=1)
    attack_loss = smooth_ce(logits, predictions, smoothing=0.0, prior="uniform", reduction="sum")
    (gradient,) = torch.autograd.grad(attack_loss, x, create_graph=create_graph)
    adversarial = x + FGSM_PARAMS["eps"] * torch.sign(gradient)
    return torch.clamp(adversarial, FGSM_PARAMS["clip_min"], FGSM_PARAMS["clip_max"])


def _nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


class Trainer:
    loss_name = "lsr.torch.smooth_ce"

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
        del seed  # nothing here draws random numbers: the driver gives the initial weights
        self.model = BasicCNN(params)
        # tf.train.AdamOptimizer's defaults, which cleverhans used.
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=learning_rate, betas=(0.9, 0.999), eps=1e-8
        )
        self.smoothing = label_smoothing
        self.prior = prior
        self.backprop_through_attack = backprop_through_attack

    def _loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return smooth_ce(logits, y, smoothing=self.smoothing, prior=self.prior)

    def train_step(self, x: np.ndarray, y: np.ndarray, adversarial: bool) -> Any:
        self.model.train()
        inputs, labels = _nchw(x), torch.from_numpy(y)
        self.optimizer.zero_grad(set_to_none=True)
        loss = self._loss(self.model(inputs), labels)
        if adversarial:
            adversarial_inputs = fgsm(
                self.model,
                inputs.requires_grad_(self.backprop_through_attack),
                create_graph=self.backprop_through_attack,
            )
            if not self.backprop_through_attack:
                adversarial_inputs = adversarial_inputs.detach()
            loss = 0.5 * loss + 0.5 * self._loss(self.model(adversarial_inputs), labels)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def distill_step(self, x: np.ndarray, teacher_logits: np.ndarray, temperature: float) -> Any:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = distill_loss(
            self.model(_nchw(x)), torch.from_numpy(teacher_logits), temperature=temperature
        )
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def logits(self, x: np.ndarray) -> np.ndarray:
        self.model.eval()
        with torch.no_grad():
            return self.model(_nchw(x)).numpy()

    def features(self, x: np.ndarray) -> np.ndarray:
        self.model.eval()
        with torch.no_grad():
            return self.model.features(_nchw(x)).numpy()

    def fgsm(self, x: np.ndarray) -> np.ndarray:
        self.model.eval()
        return fgsm(self.model, _nchw(x)).detach().numpy().transpose(0, 2, 3, 1)

    def dense_kernel(self) -> np.ndarray:
        return self.model.dense.weight.detach().numpy().T.copy()


def create(params: dict[str, np.ndarray], **options: Any) -> Trainer:
    return Trainer(params, **options)
