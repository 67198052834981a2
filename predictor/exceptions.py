"""Exceptions and warnings raised by predictor.

Errors a user can fix (a bad config value, a missing file, malformed input) derive
from :class:`PredictorUserError`; the command line prints them as one line and exits
with code 2 instead of showing a traceback.
"""

from __future__ import annotations


class PredictorError(Exception):
    """Base class of every error raised by predictor."""


class PredictorUserError(PredictorError):
    """An error the user can fix: bad configuration, missing file, malformed input."""


class ConfigError(PredictorUserError, ValueError):
    """A configuration file, key, value or environment variable is invalid."""


class InputError(PredictorUserError, ValueError):
    """An input file cannot be read as the declared telemetry format.

    Parameters
    ----------
    message : str
        What was expected and what was found.
    path : str or None, default=None
        The input file.
    row : int or None, default=None
        The 1-based line number in the file, where one row is at fault.
    column : str or None, default=None
        The column at fault.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.path = path
        self.row = row
        self.column = column
        location = []
        if path is not None:
            location.append(str(path))
        if row is not None:
            location.append(f"row {row}")
        if column is not None:
            location.append(f"column {column!r}")
        prefix = ", ".join(location)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class ModelNotFoundError(PredictorUserError, LookupError):
    """No trained model is available where scoring expects one."""


class UntrustedModelError(PredictorUserError):
    """A model file holds a type that the project does not trust to load."""


class ModelLifecycleError(PredictorUserError):
    """A registry operation cannot be done: no such version, nothing to roll back to."""


class HookError(PredictorError):
    """A failover hook could not be delivered."""


class PredictorWarning(UserWarning):
    """Base class of warnings about input or models that predictor works around."""


class DegenerateMemberWarning(PredictorWarning):
    """An ensemble member was dropped because its scores were not usable."""


class ForecastFallbackWarning(PredictorWarning):
    """A forecast model was replaced by a simpler one because its output was implausible."""


class CalibrationWarning(PredictorWarning):
    """A calibration fit fell back to a simpler map because the fitted one was unusable."""
