"""Named errors of dlfm, in one place.

Every error a user can cause derives from :class:`DlfmError`; the CLI prints its message and
exits non-zero without a traceback.
"""

from __future__ import annotations


class DlfmError(Exception):
    """Base class of every error dlfm raises on purpose."""


class DataError(DlfmError, ValueError):
    """Bad rating data: names the source (file and line, when known) and the problem."""

    def __init__(self, problem: str, *, source: str | None = None, line: int | None = None):
        self.problem = problem
        self.source = source
        self.line = line
        where = ""
        if source is not None:
            where = f"{source}"
            if line is not None:
                where += f", line {line}"
            where += ": "
        elif line is not None:
            where = f"line {line}: "
        super().__init__(where + problem)


class DatasetError(DlfmError):
    """A named data set is missing, unknown, or failed verification."""


class ModelFileError(DlfmError):
    """A model file that cannot be loaded safely (corrupt, foreign, pickled, newer format)."""


class UnknownIdError(DlfmError, KeyError):
    """A raw user or item id the model never saw, when the caller asked for strictness."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ConfigError(DlfmError, ValueError):
    """A hyper-parameter or command-line argument with an invalid value."""


class TrainingError(DlfmError, RuntimeError):
    """Training cannot go on (e.g. a NaN or infinite loss)."""
