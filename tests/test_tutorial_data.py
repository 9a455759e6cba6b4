"""The tutorial's MNIST loader and driver helpers, without any framework.

Every IDX file here is written by the test itself (``write_idx``), so expected values come
from what was written, not from the loader.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import struct

import numpy as np
import pytest

from lsr.tutorial import _driver, data
from lsr.tutorial.data import (
    IMAGES_MAGIC,
    LABELS_MAGIC,
    TEST_IMAGES,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    MnistFileError,
)


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    array = np.asarray(array, dtype=np.uint8)
    magic = (0x0800 | array.ndim) if magic is None else magic
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_idx(path, array, magic=None, cut=0):
    payload = idx_bytes(array, magic)
    if cut:
        payload = payload[:-cut]
    path.write_bytes(gzip.compress(payload))
    return path


def fake_pair(directory, images_name, labels_name, count, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=count, dtype=np.uint8)
    write_idx(directory / images_name, images)
    write_idx(directory / labels_name, labels)
    return images, labels


@pytest.fixture
def no_default_dirs(tmp_path, monkeypatch):
    """No LSR_MNIST_DIR, and a cache directory that is empty."""
    monkeypatch.delenv("LSR_MNIST_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


# --- reading IDX files ---------------------------------------------------------------


def test_read_idx_round_trip(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    labels = np.array([7, 0, 9], dtype=np.uint8)
    write_idx(tmp_path / "i.gz", images)
    write_idx(tmp_path / "l.gz", labels)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "i.gz", IMAGES_MAGIC), images)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "l.gz", LABELS_MAGIC), labels)


def test_wrong_magic_number_names_the_file(tmp_path):
    path = write_idx(
        tmp_path / TEST_LABELS, np.zeros(5), magic=0x00000D01
    )  # type code 0x0D (float) instead of 0x08
    with pytest.raises(MnistFileError, match=rf"{TEST_LABELS}.*wrong magic number"):
        data.read_idx(path, LABELS_MAGIC)
    # Images where labels are expected is a wrong magic number too.
    images = write_idx(tmp_path / "images.gz", np.zeros((2, 28, 28)))
    with pytest.raises(MnistFileError, match="magic=0x00000803"):
        data.read_idx(images, LABELS_MAGIC)


def test_truncated_data_names_the_file(tmp_path):
    path = write_idx(tmp_path / TEST_IMAGES, np.ones((3, 28, 28)), cut=100)
    with pytest.raises(MnistFileError, match=rf"{TEST_IMAGES}.*truncated"):
        data.read_idx(path, IMAGES_MAGIC)


def test_truncated_gzip_stream_names_the_file(tmp_path):
    path = tmp_path / TRAIN_IMAGES
    path.write_bytes(gzip.compress(idx_bytes(np.ones((3, 28, 28))))[:-20])
    with pytest.raises(MnistFileError, match=rf"{TRAIN_IMAGES}.*gzip"):
        data.read_idx(path, IMAGES_MAGIC)


def test_not_gzip_names_the_file(tmp_path):
    path = tmp_path / TRAIN_LABELS
    path.write_bytes(idx_bytes(np.zeros(4)))  # not compressed
    with pytest.raises(MnistFileError, match=TRAIN_LABELS):
        data.read_idx(path, LABELS_MAGIC)


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=TEST_IMAGES):
        data.read_idx(tmp_path / TEST_IMAGES, IMAGES_MAGIC)


def test_checksum_mismatch_names_the_file(tmp_path):
    path = write_idx(tmp_path / TEST_LABELS, np.zeros(5))
    with pytest.raises(MnistFileError, match=rf"{TEST_LABELS}.*SHA-256"):
        data.verify_checksum(path)


def test_official_checksums_are_sha256_hex():
    assert set(data.SHA256) == {TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS}
    for digest in data.SHA256.values():
        assert len(digest) == 64 and int(digest, 16) >= 0


def test_mismatched_pair_is_an_error(tmp_path):
    write_idx(tmp_path / TEST_IMAGES, np.zeros((3, 28, 28)))
    write_idx(tmp_path / TEST_LABELS, np.zeros(4))
    with pytest.raises(MnistFileError, match="3 images but 4 labels"):
        data.read_pair(tmp_path / TEST_IMAGES, tmp_path / TEST_LABELS)


# --- locating the files ---------------------------------------------------------------


def test_full_set_gives_the_official_split(no_default_dirs):
    directory = no_default_dirs / "mnist"
    directory.mkdir()
    train_images, train_labels = fake_pair(directory, TRAIN_IMAGES, TRAIN_LABELS, 12, seed=1)
    test_images, test_labels = fake_pair(directory, TEST_IMAGES, TEST_LABELS, 6, seed=2)
    loaded = data.load_mnist(directory, download_missing=False, verify=False)
    assert loaded.source == "mnist"
    assert loaded.x_train.shape == (12, 28, 28, 1) and loaded.x_train.dtype == np.float32
    np.testing.assert_array_equal(loaded.x_train[..., 0] * 255.0, train_images)
    np.testing.assert_array_equal(loaded.y_train, train_labels)
    np.testing.assert_array_equal(loaded.x_test[..., 0] * 255.0, test_images)
    np.testing.assert_array_equal(loaded.y_test, test_labels)
    assert loaded.description["train"] == f"{TRAIN_IMAGES}[0:12]"


def test_only_t10k_is_split_into_disjoint_halves(no_default_dirs):
    directory = no_default_dirs / "t10k"
    directory.mkdir()
    images, labels = fake_pair(directory, TEST_IMAGES, TEST_LABELS, 10)
    loaded = data.load_mnist(directory, download_missing=False, verify=False)
    assert loaded.source == "mnist-t10k-split"
    np.testing.assert_array_equal(loaded.x_train[..., 0] * 255.0, images[:5])
    np.testing.assert_array_equal(loaded.x_test[..., 0] * 255.0, images[5:])
    np.testing.assert_array_equal(loaded.y_test, labels[5:])
    assert loaded.description["train"] == f"{TEST_IMAGES}[0:5]"
    assert loaded.description["test"] == f"{TEST_IMAGES}[5:10]"


def test_environment_variable_then_cache(no_default_dirs, monkeypatch):
    env_dir = no_default_dirs / "env"
    env_dir.mkdir()
    fake_pair(env_dir, TEST_IMAGES, TEST_LABELS, 4)
    monkeypatch.setenv("LSR_MNIST_DIR", str(env_dir))
    loaded = data.load_mnist(download_missing=False, verify=False)
    assert loaded.description["files"][TEST_IMAGES] == str(env_dir / TEST_IMAGES)
    # Files missing from LSR_MNIST_DIR are taken from the cache: together a full set.
    cache = data.default_cache_dir()
    assert cache == no_default_dirs / "cache" / "lsr" / "mnist"
    cache.mkdir(parents=True)
    fake_pair(cache, TRAIN_IMAGES, TRAIN_LABELS, 6)
    fake_pair(cache, TEST_IMAGES, TEST_LABELS, 2)  # shadowed by LSR_MNIST_DIR's
    loaded = data.load_mnist(download_missing=False, verify=False)
    assert loaded.source == "mnist"
    assert loaded.description["files"][TRAIN_LABELS] == str(cache / TRAIN_LABELS)
    assert loaded.description["files"][TEST_LABELS] == str(env_dir / TEST_LABELS)
    assert len(loaded.x_train) == 6 and len(loaded.x_test) == 4


def test_only_missing_files_are_downloaded(no_default_dirs, monkeypatch):
    env_dir = no_default_dirs / "env"
    env_dir.mkdir()
    fake_pair(env_dir, TEST_IMAGES, TEST_LABELS, 4)
    monkeypatch.setenv("LSR_MNIST_DIR", str(env_dir))
    opener = fake_opener(lambda url: (_ for _ in ()).throw(OSError("offline")))
    loaded = data.load_mnist(verify=False, opener=opener)
    # One attempt per mirror for the first missing file (a train file), then t10k halves.
    assert len(opener.calls) == len(data.MIRRORS)
    assert all("train-" in url for url in opener.calls)
    assert loaded.source == "mnist-t10k-split"


def test_verify_rejects_files_that_are_not_the_official_ones(no_default_dirs):
    directory = no_default_dirs / "bad"
    directory.mkdir()
    fake_pair(directory, TEST_IMAGES, TEST_LABELS, 4)
    with pytest.raises(MnistFileError, match=rf"{TEST_IMAGES}.*checksum"):
        data.load_mnist(directory, download_missing=False, verify=True)


def test_no_mnist_without_fallback_says_where_it_looked(no_default_dirs):
    empty = no_default_dirs / "empty"
    with pytest.raises(FileNotFoundError, match=r"No MNIST files were found.*empty"):
        data.load_mnist(empty, download_missing=False, fallback=False)


def test_no_mnist_falls_back_to_sklearn_digits(no_default_dirs):
    messages = []
    loaded = data.load_mnist(download_missing=False, log=messages.append)
    assert loaded.source == "sklearn-digits"
    assert "NOT MNIST" in loaded.description["note"]
    assert any("No MNIST files were found" in message for message in messages)
    assert loaded.x_train.shape == (898, 28, 28, 1) and loaded.x_test.shape == (899, 28, 28, 1)
    assert loaded.x_train.min() >= 0.0 and loaded.x_train.max() <= 1.0
    # The 4-pixel frame stays empty, as MNIST digits sit in a centred 20x20 box.
    assert not loaded.x_train[:, :4].any() and not loaded.x_train[:, 24:].any()
    assert set(np.unique(loaded.y_train)) == set(range(10))


def test_bilinear_resize_keeps_corners_and_constants():
    images = np.arange(2 * 8 * 8, dtype=np.float64).reshape(2, 8, 8)
    resized = data._resize_bilinear(images, 20)
    assert resized.shape == (2, 20, 20)
    np.testing.assert_allclose(resized[:, 0, 0], images[:, 0, 0])
    np.testing.assert_allclose(resized[:, -1, -1], images[:, -1, -1])
    np.testing.assert_allclose(data._resize_bilinear(np.full((1, 8, 8), 0.25), 20), 0.25)


# --- downloading ------------------------------------------------------------------------


class FakeResponse(io.BytesIO):
    def __init__(self, payload: bytes, fail_after: int | None = None) -> None:
        super().__init__(payload)
        self.fail_after = fail_after

    def read(self, size=-1):
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise ConnectionResetError("connection reset by the fake server")
        return super().read(size)


def fake_opener(serve):
    """An ``urlopen`` stand-in: ``serve(url)`` returns a FakeResponse or raises."""
    calls = []

    def opener(url, timeout=None):
        calls.append(url)
        return serve(url)

    opener.calls = calls
    return opener


def leftovers(directory):
    return sorted(path.name for path in directory.iterdir())


def test_download_verifies_and_renames(tmp_path, monkeypatch):
    payload = gzip.compress(idx_bytes(np.arange(5)))
    monkeypatch.setitem(data.SHA256, TEST_LABELS, hashlib.sha256(payload).hexdigest())
    opener = fake_opener(lambda url: FakeResponse(payload))
    path = data.download(TEST_LABELS, tmp_path / "new", opener=opener)
    assert path.read_bytes() == payload
    assert leftovers(tmp_path / "new") == [TEST_LABELS]
    assert opener.calls == [data.MIRRORS[0] + TEST_LABELS]


def test_failed_download_leaves_no_partial_file(tmp_path, monkeypatch):
    payload = np.random.default_rng(0).bytes(300_000)  # several 64 KiB chunks
    monkeypatch.setitem(data.SHA256, TEST_LABELS, hashlib.sha256(payload).hexdigest())
    opener = fake_opener(lambda url: FakeResponse(payload, fail_after=1 << 16))
    with pytest.raises(ConnectionResetError):
        data.download(TEST_LABELS, tmp_path, opener=opener)
    assert len(opener.calls) == len(data.MIRRORS)  # every mirror was tried
    assert leftovers(tmp_path) == []


def test_download_with_wrong_checksum_is_discarded(tmp_path):
    opener = fake_opener(lambda url: FakeResponse(b"not mnist at all"))
    with pytest.raises(MnistFileError, match=rf"{TRAIN_IMAGES}.*wrong SHA-256"):
        data.download(TRAIN_IMAGES, tmp_path, opener=opener)
    assert leftovers(tmp_path) == []


def test_download_falls_back_to_the_next_mirror(tmp_path, monkeypatch):
    payload = gzip.compress(idx_bytes(np.arange(3)))
    monkeypatch.setitem(data.SHA256, TEST_LABELS, hashlib.sha256(payload).hexdigest())

    def serve(url):
        if url.startswith(data.MIRRORS[0]):
            raise OSError("first mirror is down")
        return FakeResponse(payload)

    path = data.download(TEST_LABELS, tmp_path, opener=fake_opener(serve))
    assert path.read_bytes() == payload


def test_load_mnist_downloads_the_missing_files(no_default_dirs, monkeypatch):
    rng = np.random.default_rng(3)
    served = {
        TRAIN_IMAGES: rng.integers(0, 256, (8, 28, 28)),
        TRAIN_LABELS: rng.integers(0, 10, 8),
        TEST_IMAGES: rng.integers(0, 256, (4, 28, 28)),
        TEST_LABELS: rng.integers(0, 10, 4),
    }
    payloads = {name: gzip.compress(idx_bytes(array)) for name, array in served.items()}
    for name, payload in payloads.items():
        monkeypatch.setitem(data.SHA256, name, hashlib.sha256(payload).hexdigest())
    opener = fake_opener(lambda url: FakeResponse(payloads[url.rsplit("/", 1)[1]]))
    target = no_default_dirs / "download-here"
    loaded = data.load_mnist(target, opener=opener)
    assert loaded.source == "mnist" and len(opener.calls) == 4
    np.testing.assert_array_equal(loaded.y_train, served[TRAIN_LABELS])
    assert leftovers(target) == sorted(served)


def test_unknown_file_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match="must be one of"):
        data.download("mnist.npz", tmp_path)


# --- the driver's framework-free pieces ---------------------------------------------------


def test_unknown_backend_lists_the_valid_ones():
    from lsr.tutorial import mnist_tutorial

    with pytest.raises(ValueError, match=r"'jax', 'torch', 'tensorflow'.*backend='mxnet'"):
        mnist_tutorial("mxnet")


@pytest.mark.parametrize(
    ("option", "value"),
    [("nb_epochs", 0), ("batch_size", -1), ("label_smoothing", 1.5), ("prior", "zipf")],
)
def test_bad_options_fail_before_anything_runs(option, value):
    from lsr.tutorial import mnist_tutorial

    with pytest.raises(ValueError, match=option):
        mnist_tutorial("torch", **{option: value})


def test_nothing_to_train_is_an_error():
    from lsr.tutorial import mnist_tutorial

    with pytest.raises(ValueError, match="nothing to train"):
        mnist_tutorial("jax", clean_train=False, adv_train=False)


@pytest.mark.parametrize(("size", "batch_size"), [(1000, 128), (256, 128), (5, 8)])
def test_epoch_order_is_cleverhans_order(size, batch_size):
    order = _driver.epoch_order(np.random.default_rng(0), size, batch_size)
    assert len(order) % batch_size == 0 and len(order) - size < batch_size
    assert set(order.tolist()) == set(range(size))
    again = _driver.epoch_order(np.random.default_rng(0), size, batch_size)
    np.testing.assert_array_equal(order, again)


def test_initial_params_follow_he_relu_normal():
    params = _driver.initial_params(seed=5, model_index=1, nb_filters=64)
    kernel = params["conv2/kernel"]
    assert kernel.shape == (6, 6, 64, 128) and kernel.dtype == np.float32
    # 294,912 draws: the sample std is within 1% of 1/sqrt(fan_in) with overwhelming odds.
    np.testing.assert_allclose(kernel.std(), 1 / math.sqrt(6 * 6 * 64), rtol=0.01)
    assert abs(kernel.mean()) < 0.01 / math.sqrt(6 * 6 * 64) * 10
    assert params["dense/kernel"].shape == (128, 10)
    assert not any(params[f"{name}/bias"].any() for name in ("conv1", "conv2", "conv3", "dense"))
    other = _driver.initial_params(seed=5, model_index=2, nb_filters=64)
    assert not np.array_equal(other["conv1/kernel"], params["conv1/kernel"])


def test_fixed_batches_pad_the_last_batch():
    x = np.arange(10)
    batches = list(_driver.fixed_batches(x, 4))
    assert [real for _, real in batches] == [4, 4, 2]
    assert all(len(batch) == 4 for batch, _ in batches)
    mapped = _driver.batched_map(lambda batch: batch * 2, x, 4)
    np.testing.assert_array_equal(mapped, x * 2)
