"""Errors a user can act on.

Every error deepscope raises on purpose says what went wrong *and* how to fix it. The CLI maps
``UsageError`` (bad flags, config keys, values, data files) to exit code 2, printing the message
as a single line instead of a traceback; a study that fails (``PieceError`` or any other
exception) or whose training diverged (``DivergenceWarning``) makes it exit with code 1.
"""

from __future__ import annotations

import difflib


class DeepscopeError(Exception):
    """Base class of deepscope's own errors."""


class UsageError(DeepscopeError):
    """Bad input: unknown study or key, wrong type or range, missing or corrupt data file."""


class ConfigError(UsageError):
    """A study configuration or command-line override that cannot be used."""


class DataError(UsageError):
    """A data set that cannot be found, read or verified."""


class StoreError(UsageError):
    """The results directory cannot be written as asked: a symbolic link where deepscope would
    write (it never writes through one), a full disk, no permission. Files already stored are
    left whole (every write is atomic)."""


class DamagedError(UsageError):
    """A file in the results directory that deepscope did not write as it is: damaged,
    truncated, of the wrong shape, a directory or link where a file belongs. A run recomputes
    it; the report skips it; both say so in one line."""


class DivergenceWarning(RuntimeWarning):
    """A member of an ensemble whose loss became NaN or infinite; it stops, the others go on.

    ``ctx.map`` records these per piece (in the cache too), the stored run lists them in
    ``meta.json`` and its findings, and ``deepscope run`` then exits with code 1.
    """


class PieceError(DeepscopeError):
    """A piece of a study (one seed, width, batch size ...) raised; the others are cached."""


def suggest(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """``did you mean 'x'?`` for the closest of ``choices``, or the list of choices — the
    second half of every "unknown name" error."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    if close:
        return f"did you mean {close[0]!r}?"
    return "choose from " + ", ".join(choices)
