"""File primitives every writer shares: exclusive locks and atomic publishing.

Locks are ``flock`` locks on a lock file: the kernel drops them when the holder exits or dies,
however it dies, so a lock never outlives its process. Lock files are emptied, never removed
(removing one would let two later processes lock two different files of the same name).

Publishing is write-to-a-temporary-then-rename (``os.replace``): a reader sees the old file or
folder or the new one, never half of one, and a crashed writer leaves only a ``.*.tmp`` name (or,
replacing a folder, the older folder under a ``.*.old`` name).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` block; waits for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class LockTimeout(Exception):
    """``waiting_lock`` gave up; ``holder`` describes who held the lock (``describe_owner``)."""

    def __init__(self, path: Path, waited_s: float, holder: str) -> None:
        super().__init__(f"{path}: waited {waited_s / 3600:.2g} h for the lock ({holder})")
        self.path, self.waited_s, self.holder = path, waited_s, holder


@contextlib.contextmanager
def waiting_lock(path: Path, timeout_s: float, poll_s: float = 1.0) -> Iterator[float]:
    """Hold an exclusive lock on ``path``, waiting at most ``timeout_s`` for it; yields the seconds waited.

    While held, the lock file names its owner (pid, host, start), so whoever waits can say who holds it.
    Raises:
        LockTimeout: still held by another process after ``timeout_s``.
    """
    start = time.monotonic()
    while (handle := try_lock(path)) is None:
        if time.monotonic() - start >= timeout_s:
            with open(path) as held:
                raise LockTimeout(path, time.monotonic() - start, describe_owner(read_owner(held)))
        time.sleep(poll_s)
    waited = time.monotonic() - start
    write_owner(handle)
    try:
        yield waited
    finally:
        unlock(handle)


def write_owner(handle: TextIO) -> None:
    """Record this process (pid, host, start time) in a lock file it holds."""
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}))
    handle.flush()


def read_owner(handle: TextIO) -> dict[str, Any]:
    """The owner a lock file names ({} when empty: its last owner ended cleanly)."""
    handle.seek(0)
    try:
        owner = json.loads(handle.read() or "{}")
    except json.JSONDecodeError:
        return {}
    return owner if isinstance(owner, dict) else {}


def describe_owner(owner: dict[str, Any]) -> str:
    """``pid 123 on host node-4, started 2026-12-07 18:03:11``."""
    if not owner:
        return "owner unknown"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.get("started", 0)))
    return f"pid {owner.get('pid')} on host {owner.get('host')}, started {started}"


def try_lock(path: Path) -> TextIO | None:
    """Take an exclusive lock on ``path`` without waiting.

    Returns:
        the open handle (read/write, positioned at 0) that holds the lock, or None when another
        live process holds it. ``unlock(handle)`` releases it.
    Raises:
        OSError: the lock file cannot be created or opened.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not a ``with`` block: the handle is the lock, held by the caller until ``unlock``.
    handle = open(path, "a+")  # noqa: SIM115
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    handle.seek(0)
    return handle


def unlock(handle: TextIO) -> None:
    """Empty the lock file (its owner ended cleanly) and release the lock taken by ``try_lock``."""
    handle.seek(0)
    handle.truncate()
    handle.flush()
    fcntl.flock(handle, fcntl.LOCK_UN)
    handle.close()


def temporary_path(path: Path) -> Path:
    """A sibling name for ``path`` that only this process writes: ``.<name>.<pid>.tmp``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_with(path: Path, write: Callable[[Path], object]) -> None:
    """``write(temporary path)``, then rename it to ``path``: a crash never leaves half a file."""
    tmp = temporary_path(path)
    write(tmp)
    os.replace(tmp, path)


def publish_folder(final: Path, files: dict[str, Path], *, marker: str = "complete") -> Path:
    """Copy ``name -> path`` (files or folders) into a new folder ``final``, atomically.

    The folder is filled under a temporary name, gets an empty ``marker`` file last, and then
    takes the place of ``final`` (``replace_folder``), so ``final/marker`` exists only for a
    complete folder.
    """
    tmp = staging_folder(final)
    for name, src in files.items():
        if src.is_dir():
            shutil.copytree(src, tmp / name)
        else:
            shutil.copy2(src, tmp / name)
    (tmp / marker).write_text("")
    replace_folder(tmp, final)
    return final


def staging_folder(final: Path) -> Path:
    """A new, empty folder beside ``final`` (``temporary_path``) to fill before ``replace_folder``."""
    tmp = temporary_path(final)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp


def replace_folder(staging: Path, final: Path) -> None:
    """Put the complete folder ``staging`` in the place of ``final``, removing the older ``final``.

    Two renames: the older folder steps aside under ``.<name>.<pid>.old`` and ``staging`` takes its
    name. A reader sees the older folder or the new one, never a mix of both; a crash between the
    renames leaves the older folder under its ``.old`` name.
    """
    old = final.with_name(f".{final.name}.{os.getpid()}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(staging, final)
    shutil.rmtree(old, ignore_errors=True)


def publish_new_folder(staging: Path, final: Path) -> bool:
    """Rename the complete folder ``staging`` to ``final``, which is never replaced once it exists.

    For folders written once and then only read (the built-in benchmark): the first writer to
    finish publishes it. Returns False, with ``staging`` removed, when another writer's ``final``
    was there first; the caller checks that one.
    """
    try:
        os.rename(staging, final)
    except OSError:
        if not final.exists():
            raise
        shutil.rmtree(staging, ignore_errors=True)
        return False
    return True
