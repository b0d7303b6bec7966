"""``simtune.files``: locks that exclude other processes and die with their holder, owners a waiter
can name, and writes that a reader sees whole or not at all."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from simtune.files import (LockTimeout, describe_owner, locked, publish_folder, publish_new_folder, read_owner,
                           replace_folder, staging_folder, temporary_path, try_lock, unlock, waiting_lock, write_with)


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """Another process that holds ``waiting_lock`` on ``tmp_path/x.lock`` until it is killed."""
    lock = tmp_path / "x.lock"
    code = (f"import time; from pathlib import Path; from simtune.files import waiting_lock\n"
            f"with waiting_lock(Path({str(lock)!r}), 10):\n    print('held', flush=True); time.sleep(120)")
    proc = subprocess.Popen(python(code), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield proc, lock
    finally:
        proc.kill()
        proc.wait()


def test_a_held_lock_is_not_taken_and_its_waiter_names_the_holder(
        holder: tuple[subprocess.Popen[str], Path]) -> None:
    proc, lock = holder
    assert try_lock(lock) is None
    start = time.monotonic()
    with pytest.raises(LockTimeout) as caught, waiting_lock(lock, timeout_s=0.5, poll_s=0.05):
        pass
    assert time.monotonic() - start >= 0.5 and caught.value.waited_s >= 0.5 and caught.value.path == lock
    assert f"pid {proc.pid} on host {socket.gethostname()}, started " in str(caught.value)


def test_a_lock_dies_with_its_holder_and_keeps_its_name(holder: tuple[subprocess.Popen[str], Path]) -> None:
    proc, lock = holder
    os.kill(proc.pid, signal.SIGKILL)  # no clean exit: the kernel drops the lock anyway
    proc.wait()
    handle = try_lock(lock)
    assert handle is not None
    assert read_owner(handle)["pid"] == proc.pid  # who held it last: a stale lock is reported, not guessed
    unlock(handle)
    assert lock.is_file() and lock.read_text() == ""  # emptied, never removed


def test_waiting_lock_names_this_process_while_held_and_empties_the_file_after(tmp_path: Path) -> None:
    lock = tmp_path / "sub" / "y.lock"
    with waiting_lock(lock, timeout_s=1) as waited:
        assert 0 <= waited < 1
        owner = json.loads(lock.read_text())
        assert (owner["pid"], owner["host"]) == (os.getpid(), socket.gethostname())
        assert abs(owner["started"] - time.time()) < 60
        assert subprocess.run(python(f"from pathlib import Path; from simtune.files import try_lock; "
                                     f"print(try_lock(Path({str(lock)!r})) is None)"),
                              capture_output=True, text=True, timeout=60).stdout.strip() == "True"
    assert lock.read_text() == ""
    with waiting_lock(lock, timeout_s=0) as waited:  # free again, at once
        assert waited < 1


def test_locked_makes_read_modify_write_safe_across_processes(tmp_path: Path) -> None:
    counter, lock, rounds = tmp_path / "count", tmp_path / "count.lock", 150
    counter.write_text("0")
    code = (f"from pathlib import Path; from simtune.files import locked\n"
            f"c = Path({str(counter)!r})\n"
            f"for _ in range({rounds}):\n"
            f"    with locked(Path({str(lock)!r})):\n"
            f"        c.write_text(str(int(c.read_text()) + 1))")
    with locked(lock):  # no worker gets past its first round while this process holds the lock
        workers = [subprocess.Popen(python(code)) for _ in range(3)]
        time.sleep(1)
        assert counter.read_text() == "0"
    assert [w.wait(timeout=120) for w in workers] == [0, 0, 0]
    assert int(counter.read_text()) == 3 * rounds


@pytest.mark.parametrize("text", ["", "not json", "[1, 2]"])
def test_an_owner_that_cannot_be_read_is_unknown(tmp_path: Path, text: str) -> None:
    (tmp_path / "z.lock").write_text(text)
    with open(tmp_path / "z.lock") as handle:
        assert read_owner(handle) == {}
    assert describe_owner({}) == "owner unknown"


def test_write_with_replaces_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "result.json"
    write_with(target, lambda tmp: tmp.write_text("old"))
    assert target.read_text() == "old"

    def crash(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("writer died")

    with pytest.raises(RuntimeError):
        write_with(target, crash)
    assert target.read_text() == "old"  # the reader never sees "half"
    assert temporary_path(target).name == f".result.json.{os.getpid()}.tmp"
    write_with(target, lambda tmp: tmp.write_text("new"))
    assert target.read_text() == "new" and sorted(p.name for p in target.parent.iterdir()) == ["result.json"]


def test_publish_folder_replaces_a_complete_folder_and_leaves_it_on_failure(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "sub" / "b.txt").write_text("b")
    final = tmp_path / "entry"
    publish_folder(final, {"a.txt": src / "a.txt", "folder": src / "sub"}, marker="done.json")
    assert sorted(str(p.relative_to(final)) for p in final.rglob("*")) == ["a.txt", "done.json", "folder",
                                                                           "folder/b.txt"]
    with pytest.raises(FileNotFoundError):
        publish_folder(final, {"a.txt": src / "a.txt", "gone": src / "missing.txt"}, marker="done.json")
    assert (final / "done.json").is_file() and (final / "folder" / "b.txt").read_text() == "b"  # untouched
    (src / "a.txt").write_text("a2")
    publish_folder(final, {"a.txt": src / "a.txt"}, marker="done.json")
    assert sorted(p.name for p in final.iterdir()) == ["a.txt", "done.json"] and (final / "a.txt").read_text() == "a2"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_replace_folder_swaps_a_whole_folder_and_leaves_no_trace(tmp_path: Path) -> None:
    final = tmp_path / "report"
    final.mkdir()
    (final / "old.png").write_text("old")
    staging = staging_folder(final)
    assert staging.parent == tmp_path and list(staging.iterdir()) == []
    (staging / "new.png").write_text("new")
    replace_folder(staging, final)
    assert [p.name for p in final.iterdir()] == ["new.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # neither the staging nor the older folder
    fresh = staging_folder(tmp_path / "first")
    replace_folder(fresh, tmp_path / "first")  # nothing to replace: a plain rename
    assert (tmp_path / "first").is_dir()


def test_publish_new_folder_never_replaces_a_published_one(tmp_path: Path) -> None:
    final = tmp_path / "bench"
    first, second = staging_folder(final), tmp_path / ".bench.other.tmp"
    second.mkdir()
    (first / "a.txt").write_text("first")
    (second / "a.txt").write_text("second")
    assert publish_new_folder(first, final) is True
    assert publish_new_folder(second, final) is False  # another writer was there first: it stays
    assert (final / "a.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench"]  # the losing staging folder is gone
