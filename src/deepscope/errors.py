"""Errors a user can act on.

Every error deepscope raises on purpose says what went wrong *and* how to fix it. The CLI maps
``UsageError`` (bad flags, config keys, values, data files) to exit code 2 and
``DivergenceError`` (a run whose loss became NaN/inf) to exit code 1, printing the message as a
single line instead of a traceback.
"""

from __future__ import annotations


class DeepscopeError(Exception):
    """Base class of deepscope's own errors."""


class UsageError(DeepscopeError):
    """Bad input: unknown study or key, wrong type or range, missing or corrupt data file."""


class ConfigError(UsageError):
    """A study configuration or command-line override that cannot be used."""


class DataError(UsageError):
    """A data set that cannot be found, read or verified."""


class DivergenceError(DeepscopeError):
    """A training run whose loss became NaN or infinite."""


class PieceError(DeepscopeError):
    """A piece of a study (one seed, width, batch size ...) raised; the others are cached."""
