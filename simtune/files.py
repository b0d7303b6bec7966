"""File primitives every writer shares: exclusive locks and atomic publishing.

Locks are ``flock`` locks on a lock file: the kernel drops them when the holder exits or dies,
however it dies, so a lock never outlives its process. Lock files are emptied, never removed
(removing one would let two later processes lock two different files of the same name).

Publishing is write-to-a-temporary-then-rename (``os.replace``): a reader sees the old file or
folder or the new one, never half of one, and a crashed writer leaves only a ``.*.tmp`` name.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO


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


def try_lock(path: Path) -> TextIO | None:
    """Take an exclusive lock on ``path`` without waiting.

    Returns:
        the open handle (read/write, positioned at 0) that holds the lock, or None when another
        live process holds it. ``unlock(handle)`` releases it.
    Raises:
        OSError: the lock file cannot be created or opened.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
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

    The folder is filled under a temporary name, gets an empty ``marker`` file last, and is
    then renamed to ``final`` (replacing an older one), so ``final/marker`` exists only for a
    complete folder.
    """
    tmp = temporary_path(final)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name, src in files.items():
        if src.is_dir():
            shutil.copytree(src, tmp / name)
        else:
            shutil.copy2(src, tmp / name)
    (tmp / marker).write_text("")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final
