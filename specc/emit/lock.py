"""An exclusive lock on an output folder, so two builds never write (or clean up) the same one.

The lock is an OS file lock on ``OUT.parent/.OUT.lock``: the kernel drops it when its
process dies, so a killed build never leaves a stale lock. A second build fails at once
with the holder's pid instead of deleting the first one's temporary folders.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from specc.errors import OutputBusyError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt

# Locks this process holds: path -> [depth, fd]. A build holds its folder's lock and emit takes it again.
_held: dict[Path, list[int]] = {}
_guard = threading.Lock()


def lock_path(out_dir: Path) -> Path:
    out_dir = Path(out_dir).absolute()
    return out_dir.parent / f".{out_dir.name}.lock"


def _try_lock(fd: int) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return True
    except OSError:
        return False


def _unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def _holder(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip() or "another process"
    except OSError:
        return "another process"


def _acquire(path: Path, out_dir: Path) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if not _try_lock(fd):
            os.close(fd)
            raise OutputBusyError(
                f"another specc build is writing {out_dir} ({_holder(path)}); wait for it to finish "
                "or build into another folder with --out"
            )
        # The holder before us may have removed the file between our open and our lock: then we
        # locked a file nobody else can see, and must lock the one at the path instead.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        _unlock(fd)
        os.close(fd)
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()}, since {started}\n".encode())
    return fd


@contextmanager
def output_lock(out_dir: Path) -> Iterator[Path]:
    """Hold the lock on ``out_dir`` for the block; re-entrant within one process."""
    path = lock_path(out_dir)
    with _guard:
        if path in _held:
            _held[path][0] += 1
        else:
            _held[path] = [1, _acquire(path, Path(out_dir).absolute())]
    try:
        yield path
    finally:
        with _guard:
            entry = _held[path]
            entry[0] -= 1
            if not entry[0]:
                del _held[path]
                try:  # removed while still locked, so a process that opened it re-checks the path
                    path.unlink(missing_ok=True)
                except OSError:
                    pass  # Windows cannot remove an open file; the lock alone still works
                _unlock(entry[1])
                os.close(entry[1])
