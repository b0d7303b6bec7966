"""User-facing errors.

Every error a user can fix (a bad file, key, value or path) is a ``SimtuneError``. The CLI
prints its message as one line on stderr and exits with code 2; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


class SimtuneError(Exception):
    """A problem with the user's input, reported as one line and exit code 2."""


class ConfigError(SimtuneError):
    """An experiment YAML or ``--set`` override is malformed, unknown or mistyped."""


class DataError(SimtuneError):
    """A dataset root, layout, image or label file is missing or invalid."""


class SearchSpaceError(SimtuneError):
    """A search-space YAML is malformed or inconsistent with the config schema."""


class TrackingError(SimtuneError):
    """The MLflow tracking store cannot be reached or written."""
