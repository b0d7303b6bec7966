"""User-facing errors and the exit codes of the command line.

Every error a user can fix (a bad file, key, value or path) is a ``SimtuneError``. The CLI
prints its message as one line on stderr and exits with code 2; anything else is a bug
and keeps its traceback. A run whose loss diverged is neither: it ends with one line and
exit code 3, its run directory kept for inspection.
"""

from __future__ import annotations

from pathlib import Path

EXIT_TRIALS_FAILED = 1  # sweep / retrain: at least one trial or seed did not finish
EXIT_USER_ERROR = 2  # bad input, refused before any compute
EXIT_DIVERGED = 3  # train: a loss became NaN or inf
EXIT_INTERRUPTED = 130  # Ctrl-C


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


class StageWaitTimeout(SimtuneError):
    """A run waited longer than ``runtime.shared_stage_timeout_h`` for another run training a shared stage."""


class NonFiniteLoss(RuntimeError):
    """A loss became NaN or inf; the run stops and is recorded as failed with this reason.

    Attributes:
        stage: "stage1" | "stage2".
        iteration: iteration of the stage at which the averaged losses were checked.
        run_dir: the run directory, set by the pipeline (None until then).
    """

    def __init__(self, message: str, *, stage: str = "", iteration: int = 0) -> None:
        super().__init__(message)
        self.stage = stage
        self.iteration = iteration
        self.run_dir: Path | None = None
