"""One writer at a time: advisory locks on run folders and output files.

Every command that writes a run folder or an output file holds :func:`writing` on it for as long
as it writes: a second ``hlsm`` process that asks for the same target is refused at once with one
message naming the holder's PID and command, so two runs never interleave their metrics or
overwrite each other's checkpoint. The lock is an exclusive ``flock`` on a hidden file beside the
target (``runs/.sft.lock`` for ``runs/sft``), so it never creates the target itself, and the
operating system releases it when its holder exits, however it exits: a lock left by a killed
process is free, and its file is taken over. A process may take the same lock again while it
holds it (a trainer inside an experiment that holds the folder).

Advisory: it keeps ``hlsm`` processes apart, not other programs; and ``flock`` may not reach across
machines on network file systems, so runs on several machines should write distinct folders.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from hlsm.errors import HLSMError

_HELD: dict[Path, int] = {}
"""Lock files this process holds, with how many times it took each (re-entrant)."""


class BusyError(HLSMError):
    """A run folder or output file another process is writing; the message names it and the fix."""


def lock_file(target: str | Path) -> Path:
    """The lock file of ``target``: a hidden file beside it (``DIR/.NAME.lock``, ``DIR`` resolved, so
    two spellings of one target share a lock)."""
    target = Path(os.path.realpath(target))  # every spelling of one target (links included) shares a lock
    return target.parent / f".{target.name}.lock"


def holder(target: str | Path) -> str:
    """Who holds the lock on ``target`` as its holder wrote it (``PID 12 (hlsm train sft ...)``), or ""."""
    try:
        return lock_file(target).read_text().strip()
    except OSError:
        return ""


UNSUPPORTED = {errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK, errno.EACCES, errno.EPERM, errno.EROFS}
"""Where a lock file cannot be made or locked (a read-only parent folder, a file system without
``flock``): the command goes on without the lock, as it did before locks existed."""


def _acquire(path: Path, target: str | Path, what: str, wait: bool) -> int | None:
    """The descriptor of ``path`` locked exclusively, or None where locks are unavailable."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    while True:  # a holder that unlinks the file between our open and our lock leaves us a dead inode
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            if err.errno in UNSUPPORTED:
                return None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            who = holder(target)
            for _ in range(20):  # the holder writes its name just after it takes the lock
                if who:
                    break
                time.sleep(0.05)
                who = holder(target)
            who = who or "another process"
            raise BusyError(
                f"{what} '{target}' is being written by {who}; wait for it to finish, or write elsewhere"
            ) from None
        except OSError as err:
            os.close(fd)
            if err.errno in UNSUPPORTED:
                return None
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextmanager
def writing(target: str | Path, what: str = "output", *, wait: bool = False) -> Iterator[None]:
    """Hold the exclusive lock on ``target`` (a run folder or an output file) for the block.

    ``wait``: block until the holder releases it (the experiment cache, where another experiment may be
    training the same run) instead of refusing. Where no lock can be taken (a read-only parent folder,
    a file system without ``flock``) the block runs unlocked.

    Raises
    ------
    BusyError
        When another process holds it (and not ``wait``): the message names ``what``, the target, the
        holder and the fix.
    """
    path = lock_file(target)
    if path in _HELD:
        _HELD[path] += 1
        try:
            yield
        finally:
            _HELD[path] -= 1
        return
    fd = _acquire(path, target, what, wait)
    if fd is None:
        yield
        return
    try:
        command = " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv)) or "python"
        os.ftruncate(fd, 0)
        os.write(fd, f"PID {os.getpid()} ({command})\n".encode())
    except OSError:
        pass  # the lock holds; only its holder's name is missing
    _HELD[path] = 1
    try:
        yield
    finally:
        del _HELD[path]
        try:
            path.unlink()  # while still holding it: a waiter that opened the old file retries
        except OSError:
            pass
        os.close(fd)


@contextmanager
def writing_all(targets: Sequence[str | Path], what: str = "output", *, wait: bool = False) -> Iterator[None]:
    """:func:`writing` on every target, released together; taken in the order of their lock files, so
    that processes waiting on overlapping sets cannot deadlock."""
    with ExitStack() as stack:
        for target in sorted(targets, key=lock_file):
            stack.enter_context(writing(target, what, wait=wait))
        yield
