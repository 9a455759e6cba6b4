"""MNIST for the tutorial: the four official gzip IDX files, found, checked or downloaded.

Each file is taken from the first of these directories that holds it:

1. ``data_dir`` when given (and nothing else);
2. otherwise the directory in the ``LSR_MNIST_DIR`` environment variable, then the user
   cache directory (``$XDG_CACHE_HOME/lsr/mnist``, by default ``~/.cache/lsr/mnist``).

Files found nowhere are downloaded (with ``download_missing``) into ``data_dir`` or the
cache, each verified against its published SHA-256 and written atomically (a temporary
file renamed into place, removed on any failure). All four files give the official split
(60,000 training images from ``train-*``, 10,000 test images from ``t10k-*``). When only
one pair of files is available
(CI ships only ``t10k-*``), that pair is split in two disjoint halves: the first half is
the training split and the second half the test split (for t10k: images 0-4,999 train,
5,000-9,999 test). When no MNIST is available at all, scikit-learn's 8 x 8 handwritten
digits (1,797 images that ship inside scikit-learn) are resized to 28 x 28 and used
instead; ``MnistData.source`` and ``MnistData.description`` always say what was used,
``data_headline`` says it in one line (the tutorial prints it above every table and
figure), and the fallback is announced on stderr even when no ``log`` is given.

Only NumPy and the standard library are needed (scikit-learn only for the fallback).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"

# SHA-256 of the official files, as published by torchvision's MNIST resources, the
# TensorFlow Datasets checksum list and many other loaders (the t10k values also match the
# copies in this project's CI data).
SHA256 = {
    TRAIN_IMAGES: "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    TRAIN_LABELS: "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    TEST_IMAGES: "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    TEST_LABELS: "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}

# yann.lecun.com has long refused anonymous downloads; these mirrors serve the same bytes
# (TensorFlow's and PyTorch's download locations).
MIRRORS = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
)

IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension

PAIRS = ((TRAIN_IMAGES, TRAIN_LABELS), (TEST_IMAGES, TEST_LABELS))

Opener = Callable[..., Any]


# What each ``MnistData.source`` is, for people: the fallback says plainly that it is not MNIST.
SOURCE_LABELS = {
    "mnist": "MNIST",
    "mnist-t10k-split": "MNIST t10k files only, split in two halves",
    "mnist-train-split": "MNIST train files only, split in two halves",
    "sklearn-digits": "scikit-learn digits (NOT MNIST)",
}


def data_label(source: str) -> str:
    """A short name for ``MnistData.source``, e.g. for a figure's title."""
    return "data: " + SOURCE_LABELS.get(source, source)


def data_headline(source: str, description: dict[str, Any]) -> str:
    """One line saying which data were used: the label, then the training and test split.

    ``source`` and ``description`` are ``MnistData``'s (also stored in every report), e.g.
    ``"data: scikit-learn digits (NOT MNIST), ...: train ..., test ..."``.
    """
    return (
        f"{data_label(source)}: train {description.get('train', '?')}, "
        f"test {description.get('test', '?')}"
    )


class MnistFileError(ValueError):
    """A data file that is corrupt: wrong magic number, truncated, or a checksum mismatch."""


@dataclass
class MnistData:
    """The tutorial's two splits, with where they came from.

    Attributes:
        x_train, x_test: float32 images of shape (N, 28, 28, 1) in [0, 1].
        y_train, y_test: int64 class ids of shape (N,).
        source: ``"mnist"`` (official split), ``"mnist-<prefix>-split"`` (one pair of
            files split in halves) or ``"sklearn-digits"`` (the offline fallback).
        description: what was read: directory, files, index ranges of each split, and
            a note when the data is not the official split.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    description: dict[str, Any] = field(default_factory=dict)

    @property
    def headline(self) -> str:
        """``data_headline`` of this data: what the tutorial prints above its results."""
        return data_headline(self.source, self.description)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/lsr/mnist`` (``%LOCALAPPDATA%`` on Windows), else ``~/.cache``."""
    base = os.environ.get("XDG_CACHE_HOME")
    if not base and sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA")
    root = Path(base) if base else Path.home() / ".cache"
    return root / "lsr" / "mnist"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksum(path: Path) -> None:
    """Raise ``MnistFileError`` naming ``path`` when its SHA-256 is not the official one."""
    path = Path(path)
    expected = SHA256[path.name]
    actual = sha256_of(path)
    if actual != expected:
        raise MnistFileError(
            f"MNIST file {str(path)!r} does not have the official SHA-256 checksum: the "
            f"file is corrupt or not the official {path.name}; delete it (it will be "
            f"downloaded again where possible). Received: sha256={actual}, "
            f"expected {expected}"
        )


def read_idx(path: Path | str, magic: int) -> np.ndarray:
    """Read one gzip-compressed IDX file of unsigned bytes.

    Args:
        path: the ``.gz`` file.
        magic: ``IMAGES_MAGIC`` (0x0803: N x rows x cols) or ``LABELS_MAGIC`` (0x0801: N).

    Returns:
        A uint8 array of the shape in the file's header.

    Raises:
        FileNotFoundError: the file does not exist.
        MnistFileError: not gzip, wrong magic number, or fewer bytes than the header
            promises (truncated); the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MNIST file {str(path)!r} does not exist.")
    try:
        with gzip.open(path, "rb") as stream:
            payload = stream.read()
    except (OSError, EOFError) as error:
        # gzip raises BadGzipFile (an OSError) for non-gzip data and EOFError for a
        # stream cut short: both mean the file on disk is damaged.
        raise MnistFileError(
            f"MNIST file {str(path)!r} is not a complete gzip file ({error}); it is "
            "truncated or corrupt. Delete it and download it again."
        ) from error
    ndim = magic & 0xFF
    header_size = 4 + 4 * ndim
    if len(payload) < 4:
        raise MnistFileError(
            f"MNIST file {str(path)!r} is truncated: it holds {len(payload)} bytes, fewer "
            "than an IDX header."
        )
    (found_magic,) = struct.unpack(">I", payload[:4])
    if found_magic != magic:
        raise MnistFileError(
            f"MNIST file {str(path)!r} has the wrong magic number: expected "
            f"0x{magic:08X} ({'images' if magic == IMAGES_MAGIC else 'labels'}). "
            f"Received: magic=0x{found_magic:08X}"
        )
    if len(payload) < header_size:
        raise MnistFileError(
            f"MNIST file {str(path)!r} is truncated inside its header "
            f"({len(payload)} of {header_size} bytes)."
        )
    shape = struct.unpack(f">{ndim}I", payload[4:header_size])
    expected = int(np.prod(shape))
    found = len(payload) - header_size
    if found != expected:
        kind = "truncated" if found < expected else "longer than its header says"
        raise MnistFileError(
            f"MNIST file {str(path)!r} is {kind}: its header announces shape {shape} "
            f"({expected} bytes of data). Received: {found} bytes of data"
        )
    return np.frombuffer(payload, dtype=np.uint8, offset=header_size).reshape(shape)


def read_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, ...]:
    """Images scaled to float32 [0, 1] with a channel axis, and int64 labels."""
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
        raise MnistFileError(
            f"MNIST files {str(images_path)!r} and {str(labels_path)!r} do not match: "
            f"{images.shape[0]} images but {labels.shape[0]} labels."
        )
    if labels.size and int(labels.max()) > 9:
        raise MnistFileError(
            f"MNIST file {str(labels_path)!r} holds labels above 9. "
            f"Received: max label={int(labels.max())}"
        )
    x = (images.astype(np.float32) / np.float32(255.0))[..., None]
    return x, labels.astype(np.int64)


def download(
    name: str,
    directory: Path | str,
    *,
    mirrors: Sequence[str] = MIRRORS,
    opener: Opener = urllib.request.urlopen,
    timeout: float = 30.0,
) -> Path:
    """Download one official MNIST file into ``directory``, verified and atomically.

    The bytes go to a temporary file in ``directory`` while their SHA-256 is computed;
    only a file with the official checksum is renamed to ``name``. On any failure the
    temporary file is removed, so no partial file is ever left behind.

    Args:
        name: one of the four official file names.
        directory: where to put it (created if needed).
        mirrors: base URLs tried in order.
        opener: ``urllib.request.urlopen`` or a stand-in with its signature (tests).
        timeout: seconds per connection attempt.

    Returns:
        The path of the verified file.

    Raises:
        MnistFileError: a mirror served bytes with the wrong checksum (last failure).
        OSError: no mirror could be reached (last failure).
    """
    if name not in SHA256:
        raise ValueError(f"`name` must be one of {sorted(SHA256)}. Received: name={name!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    failures = []
    for mirror in mirrors:
        url = mirror + name
        handle, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=directory)
        try:
            digest = hashlib.sha256()
            with os.fdopen(handle, "wb") as sink, opener(url, timeout=timeout) as response:
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    digest.update(chunk)
                    sink.write(chunk)
            if digest.hexdigest() != SHA256[name]:
                raise MnistFileError(
                    f"Downloaded MNIST file {name!r} from {url} has the wrong SHA-256 "
                    f"checksum, so it was discarded. Received: sha256={digest.hexdigest()}, "
                    f"expected {SHA256[name]}"
                )
            os.replace(temporary, target)
            return target
        except BaseException as error:
            Path(temporary).unlink(missing_ok=True)
            if not isinstance(error, Exception):
                raise  # KeyboardInterrupt and friends: stop, but leave nothing behind.
            failures.append(error)
    last = failures[-1] if failures else OSError(f"no mirror to download {name!r} from")
    raise last


def candidate_dirs(data_dir: Path | str | None) -> list[Path]:
    if data_dir is not None:
        return [Path(data_dir)]
    dirs = []
    env = os.environ.get("LSR_MNIST_DIR", "").strip()
    if env:
        dirs.append(Path(env))
    dirs.append(default_cache_dir())
    return dirs


def find_files(dirs: Sequence[Path]) -> dict[str, Path]:
    """Each official file that exists, from the first directory in ``dirs`` holding it."""
    found = {}
    for name in sorted(SHA256):
        for directory in dirs:
            if (directory / name).is_file():
                found[name] = directory / name
                break
    return found


def load_mnist(
    data_dir: Path | str | None = None,
    *,
    download_missing: bool = True,
    verify: bool = True,
    fallback: bool = True,
    opener: Opener = urllib.request.urlopen,
    log: Callable[[str], None] | None = None,
) -> MnistData:
    """Load MNIST (or the digits fallback) as described in this module's docstring.

    Args:
        data_dir: the only directory to use; default: ``LSR_MNIST_DIR``, then the cache.
        download_missing: download the official files that no directory holds (into
            ``data_dir``, or the cache).
        verify: check each file's SHA-256 before reading it (downloads are always
            checked).
        fallback: use scikit-learn's digits when no MNIST is available; if False, raise
            ``FileNotFoundError`` instead.
        opener: the URL opener for downloads (tests pass a fake one).
        log: called with one line of text for each decision that changes the data. The
            fallback to the digits is never silent: without ``log`` its line goes to
            stderr.

    Returns:
        ``MnistData`` with both splits and their description.
    """
    say = log or (lambda message: None)
    dirs = candidate_dirs(data_dir)
    found = find_files(dirs)
    download_error = None
    missing = sorted(set(SHA256) - set(found))
    if missing and download_missing:
        target = dirs[0] if data_dir is not None else default_cache_dir()
        try:
            for name in missing:
                say(f"downloading {name} into {target}")
                found[name] = download(name, target, opener=opener)
        except (OSError, MnistFileError) as error:
            download_error = error
            say(f"could not download MNIST ({error})")
    if len(found) == len(SHA256):
        return _official(found, verify)
    for images_name, labels_name in reversed(PAIRS):  # t10k first: it is what CI ships
        if images_name in found and labels_name in found:
            return _halves(found[images_name], found[labels_name], verify, say)
    looked = ", ".join(str(d) for d in dirs)
    reason = (
        f"the download failed ({download_error})"
        if download_error is not None
        else "downloading is disabled"
    )
    message = (
        f"No MNIST files were found (looked in: {looked}) and {reason}. Put the four "
        f"official files ({', '.join(sorted(SHA256))}) in one of those directories or "
        "set LSR_MNIST_DIR."
    )
    if not fallback:
        raise FileNotFoundError(message)
    announce = log or _to_stderr
    announce(
        "NOT MNIST: using scikit-learn's 8x8 handwritten digits, resized to 28x28, "
        f"instead. {message}"
    )
    return load_digits_fallback(note=message)


def _to_stderr(message: str) -> None:
    print(f"[lsr.tutorial] {message}", file=sys.stderr, flush=True)


def _official(found: dict[str, Path], verify: bool) -> MnistData:
    if verify:
        for path in found.values():
            verify_checksum(path)
    x_train, y_train = read_pair(found[TRAIN_IMAGES], found[TRAIN_LABELS])
    x_test, y_test = read_pair(found[TEST_IMAGES], found[TEST_LABELS])
    return MnistData(
        x_train,
        y_train,
        x_test,
        y_test,
        source="mnist",
        description={
            "files": {name: str(path) for name, path in found.items()},
            "train": f"{TRAIN_IMAGES}[0:{len(x_train)}]",
            "test": f"{TEST_IMAGES}[0:{len(x_test)}]",
            "checksums_verified": verify,
        },
    )


def _halves(images_path: Path, labels_path: Path, verify: bool, say) -> MnistData:
    if verify:
        verify_checksum(images_path)
        verify_checksum(labels_path)
    x, y = read_pair(images_path, labels_path)
    half = len(x) // 2
    prefix = images_path.name.split("-")[0]
    note = (
        f"Only {images_path.name} and {labels_path.name} were available (in "
        f"{images_path.parent}): the training split is its images [0:{half}] and the test "
        f"split its images [{half}:{len(x)}], disjoint halves of the same file."
    )
    say(note)
    return MnistData(
        x[:half],
        y[:half],
        x[half:],
        y[half:],
        source=f"mnist-{prefix}-split",
        description={
            "files": {images_path.name: str(images_path), labels_path.name: str(labels_path)},
            "train": f"{images_path.name}[0:{half}]",
            "test": f"{images_path.name}[{half}:{len(x)}]",
            "checksums_verified": verify,
            "note": note,
        },
    )


def _resize_bilinear(images: np.ndarray, size: int) -> np.ndarray:
    """(N, h, w) -> (N, size, size), bilinear with edge pixels at the edges (align corners)."""
    _, height, width = images.shape
    rows = np.linspace(0.0, height - 1.0, size)
    cols = np.linspace(0.0, width - 1.0, size)
    r0 = np.floor(rows).astype(int)
    c0 = np.floor(cols).astype(int)
    r1 = np.minimum(r0 + 1, height - 1)
    c1 = np.minimum(c0 + 1, width - 1)
    fr = (rows - r0)[None, :, None]
    fc = (cols - c0)[None, None, :]
    top = images[:, r0][:, :, c0] * (1 - fc) + images[:, r0][:, :, c1] * fc
    bottom = images[:, r1][:, :, c0] * (1 - fc) + images[:, r1][:, :, c1] * fc
    return top * (1 - fr) + bottom * fr


def load_digits_fallback(note: str = "") -> MnistData:
    """scikit-learn's 1,797 8x8 digits as MNIST-like 28x28 images in [0, 1].

    Each 8x8 image (values 0-16) is resized bilinearly to 20x20 and centred in a 28x28
    frame, as MNIST centres its digits in a 20x20 box. The first half of the examples
    is the training split, the second half the test split.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = digits.images.astype(np.float64) / 16.0
    framed = np.zeros((len(small), 28, 28), dtype=np.float32)
    framed[:, 4:24, 4:24] = np.clip(_resize_bilinear(small, 20), 0.0, 1.0)
    x = framed[..., None]
    y = digits.target.astype(np.int64)
    half = len(x) // 2
    return MnistData(
        x[:half],
        y[:half],
        x[half:],
        y[half:],
        source="sklearn-digits",
        description={
            "files": {},
            "train": f"sklearn.datasets.load_digits()[0:{half}] resized to 28x28",
            "test": f"sklearn.datasets.load_digits()[{half}:{len(x)}] resized to 28x28",
            "note": (note + " " if note else "")
            + "NOT MNIST: scikit-learn's 8x8 digits (UCI optdigits test set), resized.",
        },
    )
