"""cleverhans v3.1.0's MNIST tutorial on lsr, the same experiment in JAX, PyTorch and
TensorFlow (``prior="others"`` gives the targets of its versions up to v2.1.0).

``python -m lsr.tutorial --backend all`` runs it from the command line (see
``lsr/tutorial/__main__.py``); ``mnist_tutorial(backend, ...)`` runs it from Python. Importing
this package imports no framework: each backend's module is imported when it is used.
"""

from lsr.tutorial._driver import (
    BACKENDS,
    DEFAULT_SEED,
    TutorialReport,
    mnist_tutorial,
)
from lsr.tutorial.data import MnistData, MnistFileError, load_mnist

__all__ = [
    "BACKENDS",
    "DEFAULT_SEED",
    "MnistData",
    "MnistFileError",
    "TutorialReport",
    "load_mnist",
    "mnist_tutorial",
]
