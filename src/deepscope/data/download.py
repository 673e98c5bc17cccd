"""Verified downloads of the image sets into a cache, the last source deepscope tries.

:data:`MIRRORS` lists public base URLs per set, each serving the four ``.gz`` IDX files, and
:data:`SHA256` their published digests. :func:`download` fetches into :func:`cache_dir`
(``$DEEPSCOPE_CACHE/NAME``, else ``$XDG_CACHE_HOME/deepscope/NAME``, else
``~/.cache/deepscope/NAME``), keeping a file only once its SHA-256 matches;
:func:`is_cached` tells whether a folder already holds a verified copy. In the search order
of :mod:`deepscope.data.mnist` this is the last source, and only a caller's ``download=True``
lets it touch the network.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from deepscope.data.images import ADVICE, FILES, IMAGE_SETS
from deepscope.errors import DataError

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


def is_cached(folder: Path, sha256: Mapping[str, str]) -> bool:
    """Whether ``folder`` holds every file named in ``sha256`` (file name -> hex digest) with
    that digest: a verified copy that needs no network."""
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
