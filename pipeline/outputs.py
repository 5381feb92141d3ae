"""Writing outputs so that nothing is lost and nothing is mixed.

Two tools, for any file or folder ``path``:

- ``output_lock(path)`` holds ``<path>.lock`` while ``path`` is written. The
  file names the holder (pid, host, command) and is locked with ``flock``, so
  the kernel releases it when the holder dies, even by ``kill -9``: a second
  writer fails at once naming the holder's pid, and a lock file left by a
  dead process is taken over with a message.
- ``publish(new, path)`` puts a finished temporary sibling in place of
  ``path`` by renames. Folders cannot be renamed over a non-empty folder, so
  the old one is first renamed to ``<path>.old``; if the process dies between
  the two renames, ``restore_interrupted(path)`` (called by the next writer)
  puts the old output back. Readers see the old output or the new one, never
  a mix, and a failed write leaves the old one as it was.

``staging_path(path)`` (``<path>.partial``) is where a new version is built;
only the holder of the lock touches it, so a resumable output (the feature
store, a training work dir) can keep it across a crash and continue there.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from avapipe.provenance import write_folder_record


class OutputLockedError(RuntimeError):
    """Another process is writing the output."""


@dataclass(frozen=True)
class LockHolder:
    pid: int
    host: str
    command: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} ({self.command})"


def lock_path(path: Path) -> Path:
    path = Path(path)
    return path.with_name(f"{path.name}.lock")


def staging_path(path: Path) -> Path:
    path = Path(path)
    return path.with_name(f"{path.name}.partial")


def _old_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.old")


def _holder(fd: int) -> LockHolder | None:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 65536).decode(errors="replace")
    try:
        return LockHolder(**json.loads(text))
    except (ValueError, TypeError):
        return None


def _open_locked(lock: Path, path: Path) -> int:
    """An fd of ``lock`` holding its flock; raises OutputLockedError if held."""
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            who = holder.describe() if holder else "another process"
            raise OutputLockedError(
                f"{path} is being written by {who} (lock file {lock}); wait for it to "
                f"finish or stop it (kill {holder.pid if holder else '<pid>'}). Run experiments "
                "one after another, or queue them: dvc exp run --queue, then dvc queue start"
            ) from None
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the previous holder removed the file meanwhile: lock the new one


@contextmanager
def output_lock(path: Path, *, log: Callable[[str], None] = print) -> Iterator[None]:
    """Holds ``<path>.lock`` for the duration of the block (see the module docstring)."""
    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = _open_locked(lock, Path(path))
    try:
        stale = _holder(fd)
        if stale is not None:
            log(f"{lock}: taking over the stale lock of {stale.describe()}, which is no "
                "longer running")
        me = LockHolder(pid=os.getpid(), host=socket.gethostname(),
                        command=" ".join(Path(a).name if i == 0 else a
                                         for i, a in enumerate(sys.argv)) or "python")
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(asdict(me)).encode())
        os.fsync(fd)
        yield
    finally:
        try:
            os.unlink(lock)
        finally:
            os.close(fd)  # releases the flock


def remove_path(path: Path) -> None:
    """Deletes a file or folder; nothing if absent."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def restore_interrupted(path: Path) -> None:
    """Undoes a publish cut between its two renames: the old output comes back."""
    path, old = Path(path), _old_path(Path(path))
    if old.exists() and not path.exists():
        os.replace(old, path)
    remove_path(old)


def publish(new: Path, path: Path) -> None:
    """Puts ``new`` (a sibling file or folder) at ``path``, replacing what was there."""
    new, path = Path(new), Path(path)
    if not (path.is_dir() and not path.is_symlink()):
        os.replace(new, path)  # a file (or nothing) is replaced in one rename
        return
    old = _old_path(path)
    remove_path(old)
    os.replace(path, old)
    os.replace(new, path)
    remove_path(old)


@contextmanager
def replacing_folder(path: Path, *, record: dict | None = None,
                     keep_partial: bool = False) -> Iterator[Path]:
    """Holds ``path``'s lock and yields ``staging_path(path)`` to build the new
    folder in; when the block succeeds, writes ``record`` into it
    (``avapipe.provenance``) and publishes it in place of ``path``.

    keep_partial: the staging folder a failed or killed run left is handed
    over as it is (the caller decides whether to continue it) and kept after
    a failure; otherwise it starts empty and is removed on failure.
    """
    path = Path(path)
    with output_lock(path):
        restore_interrupted(path)
        staging = staging_path(path)
        if not keep_partial:
            remove_path(staging)
        staging.mkdir(parents=True, exist_ok=True)
        try:
            yield staging
            if record is not None:
                write_folder_record(staging, record)
            publish(staging, path)
        except BaseException:
            if not keep_partial:
                remove_path(staging)
            raise


@contextmanager
def replacing_file(path: Path) -> Iterator[Path]:
    """A temporary sibling to write; it replaces ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
