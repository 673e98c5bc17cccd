"""The IDX format, and the image sets stored as directories of IDX files.

An IDX file holds one array: two zero bytes, a data-type code, the number of dimensions, one
big-endian uint32 per dimension, then the data in C order (big-endian for multi-byte types).
:func:`read_idx` reads one, raw or gzip-compressed, refusing anything damaged, and
:func:`write_idx` writes one. An image set is four such files
(:data:`~deepscope.data.images.FILES`): :func:`find_idx_files` finds them in a directory (in
a sub-folder named after the set, in torchvision's layout, or flat) and
:func:`read_idx_files` reads and checks them. A data directory, Debian's Fashion-MNIST
package and the download cache are all read this way.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from deepscope.data.images import FILES, ImageArrays, check_image_set, image_arrays
from deepscope.errors import DataError

# Sub-folders of a data directory searched before the directory itself, most specific first.
SUBFOLDERS = {
    "mnist": ("mnist", "MNIST/raw"),
    "fashion-mnist": ("fashion-mnist", "FashionMNIST/raw"),
}

_BROKEN_FILE_FIX = "delete it and re-download, or point --data-dir at a good copy"

# ---------------------------------------------------------------------------------------------
# One IDX file.

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



def candidate_folders(name: str, root: Path) -> list[Path]:
    """The folders under ``root`` searched for ``name``, in the order they are searched."""
    return [root / sub for sub in SUBFOLDERS[name]] + [root]


def find_idx_files(name: str, root: str | Path) -> dict[str, Path] | None:
    """The four IDX files of ``name`` under ``root``, keyed like :data:`FILES`, or None.

    Looks in ``root/<name>/``, the torchvision folder (``root/MNIST/raw/`` or
    ``root/FashionMNIST/raw/``) and ``root`` itself, in that order; in each folder a raw file
    is preferred to its ``.gz``. A folder holding some but not all four files is an error,
    since it is almost certainly an incomplete copy the user meant to use.
    """
    for folder in candidate_folders(name, Path(root)):
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
    check_image_set(name, arrays, where, _BROKEN_FILE_FIX)
    return image_arrays(arrays, str(files["train_images"].parent))

