"""deepscope's version, read from the installed package's metadata (one place: pyproject)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("deepscope")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
