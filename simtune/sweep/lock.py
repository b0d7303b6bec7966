"""One sweep per name at a time: an exclusive lock beside the sweep's folder.

``<storage>/.<name>.lock`` is held with ``flock`` for the whole sweep and names its owner
(pid, host, start time). The kernel drops the ``flock`` when the owner dies, however it
dies, so a lock file that can be locked again is stale: it is taken over and reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from simtune.errors import ConfigError
from simtune.files import describe_owner, read_owner, try_lock, unlock, write_owner


class SweepLock:
    """The lock of sweep ``name`` in ``storage``; ``acquire`` before Ray starts, ``release`` at the end."""

    def __init__(self, storage: Path, name: str) -> None:
        self.path = Path(storage) / f".{name}.lock"
        self.name = name
        self._handle: TextIO | None = None

    def acquire(self) -> str | None:
        """Take the lock.

        Returns:
            a one-line note when a stale lock of a dead owner was taken over, else None.
        Raises:
            ConfigError: another live process holds it (the message names its pid and host), or
                the storage folder cannot be written.
        """
        try:
            handle = try_lock(self.path)
        except OSError as exc:
            raise ConfigError(f"--storage {self.path.parent}: cannot write there ({exc.strerror})") from None
        if handle is None:
            with open(self.path) as held:
                owner = describe_owner(read_owner(held))
            raise ConfigError(f"sweep '{self.name}' is already running ({owner}, lock {self.path}); wait for it "
                              f"or choose another --name")
        previous = read_owner(handle)
        write_owner(handle)
        self._handle = handle
        if previous:
            return f"took over the stale lock of sweep '{self.name}' ({describe_owner(previous)}, no longer running)"
        return None

    def release(self) -> None:
        """Drop the lock; the emptied file tells the next owner that this one ended cleanly.

        The file is emptied, not removed: removing it would let two later sweeps lock two
        different files of the same name.
        """
        if self._handle is None:
            return
        unlock(self._handle)
        self._handle = None

    def __enter__(self) -> SweepLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
