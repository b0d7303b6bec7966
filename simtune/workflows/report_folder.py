"""Where ``simtune report`` writes: one folder per report, ``<sweep>/report/`` unless ``--out``.

A report is derived from the sweep's run directories, so it is not kept like a run: each
``simtune report`` replaces the folder whole (no figure of an older report stays behind),
says so in a note, and publishes it with one rename (``files.replace_folder``), so a reader
never sees half a report. Every report folder holds ``report.json`` (which sweep, when); a
folder given with ``--out`` that holds anything but a report is refused, never replaced.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from simtune.errors import ConfigError
from simtune.files import replace_folder, staging_folder

MANIFEST = "report.json"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class ReportFolder:
    """The folder a report goes to and when the report it replaces was written (None: no report)."""

    path: Path
    replaces: str | None

    def staging(self) -> Path:
        """A new, empty folder beside ``path`` that the report is written into."""
        return staging_folder(self.path)

    def publish(self, staging: Path, sweep_dir: Path) -> str | None:
        """Put the report written in ``staging`` in the place of ``path``; the note that says what it replaced."""
        manifest = {"sweep": str(sweep_dir), "written": time.strftime(TIME_FORMAT)}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        replace_folder(staging, self.path)
        if self.replaces is None:
            return None
        return f"replaced the report written {self.replaces} in {self.path} (a report folder holds the latest report)"


def report_folder(path: Path, *, chosen: bool) -> ReportFolder:
    """The report folder ``path``: ``<sweep>/report`` (``chosen`` False) or the user's ``--out``.

    Raises:
        ConfigError: ``path`` is a file, or a ``--out`` folder that holds files but no report.
    """
    if not path.exists():
        return ReportFolder(path, None)
    if not path.is_dir():
        raise ConfigError(f"--out {path}: a file, not a folder; give a new folder or a report folder")
    manifest = path / MANIFEST
    if manifest.is_file():
        return ReportFolder(path, _written(manifest))
    if not any(path.iterdir()):
        return ReportFolder(path, None)
    if chosen:
        raise ConfigError(f"--out {path}: holds files but no report ({MANIFEST}); simtune report replaces only "
                          f"a report folder: give a new folder")
    return ReportFolder(path, _modified(path))  # the sweep's own report/, written before report.json


def _written(manifest: Path) -> str:
    """When the manifest says its report was written (else when the manifest was)."""
    try:
        return str(json.loads(manifest.read_text())["written"])
    except (ValueError, KeyError, TypeError):
        return _modified(manifest)


def _modified(path: Path) -> str:
    return time.strftime(TIME_FORMAT, time.localtime(path.stat().st_mtime))
