"""Writing results: atomic file writes and JSON helpers.

Results hlsm writes (corpora, checkpoints, metrics, reports, posteriors, exports) go through
:func:`atomic_path`: the content is written to a temporary file beside the target and renamed into
place, so a killed run or a failed write never leaves a partial output file, and an existing file is
replaced only by a complete one (figures too); logs are appended directly.

The same function is the one check of output targets and write failures: a target that exists must
be a regular file (a device, a FIFO, a socket, a folder or a symbolic link is refused before anything
is written, :func:`check_target`), and a write that fails for lack of room or rights (a full disk, a
quota, a file-size limit, a read-only file system, permissions) raises :class:`OutputError` naming
the output and the reason, with the temporary file removed and the earlier file untouched.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hlsm.errors import HLSMError, InputError
from hlsm.examples import resolve


def _umask() -> int:
    """The process's umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EFBIG: "the file would exceed the file-size limit (ulimit -f)",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "the operation is not permitted",
}
"""What a failed write's errno means, in the words of :class:`OutputError`'s message."""


class OutputError(HLSMError, OSError):
    """An output that cannot be written: the message names the path and the reason (``errno`` and
    ``filename`` as an :class:`OSError`'s)."""

    def __init__(self, message: str, code: int | None = None, path: str | None = None) -> None:
        OSError.__init__(self, code, message, path)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:  # back from a worker process as it was raised
        return (type(self), (self.message, self.errno, self.filename))


def _write_failed(path: str | Path, err: OSError) -> OutputError:
    """The :class:`OutputError` of a failed write of ``path``: the output named, the errno explained."""
    reason = REASONS.get(err.errno or 0, err.strerror)
    return OutputError(f"cannot write '{path}': {reason}", err.errno, str(path))


_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISLNK, "a symbolic link"),
)


def check_target(path: str | Path) -> None:
    """Refuse an output target that exists and is not a regular file (nothing is written through a
    link, into a device or in place of a folder); a new path or a regular file passes."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as err:
        raise _write_failed(path, err) from None
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    raise OutputError(f"output '{path}' exists and is {kind}, not a regular file; remove it or write elsewhere")


def _os_error(err: BaseException) -> OSError | None:
    """The :class:`OSError` behind ``err`` (itself, or the error it wraps: ``torch.save`` raises a
    ``RuntimeError`` while handling a failed write), or None. An error raised while handling an
    unrelated one counts only when the wrapped error is a failed write (:data:`REASONS`)."""
    seen: set[int] = set()
    first = True
    while err is not None and id(err) not in seen:
        if isinstance(err, OSError) and err.errno is not None and (first or err.errno in REASONS):
            return err
        seen.add(id(err))
        first = False
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    return None


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error, rename it to ``path``.

    For writers that want a file name (``to_netcdf``). The target is checked first
    (:func:`check_target`) and its parent folder created. On any error the temporary file is
    removed; a failed write (an :class:`OSError`, or an error caused by one) raises
    :class:`OutputError` naming ``path``, not the temporary file, and the reason. The file gets the
    mode a plain ``open(path, "w")`` would give (``0666`` less the umask).
    """
    path = Path(path)
    check_target(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        raise _write_failed(path, err) from None
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from other users
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        cause = None if isinstance(err, (KeyboardInterrupt, SystemExit)) else _os_error(err)
        if cause is None:
            raise
        raise _write_failed(path, cause) from None  # the output named, not the temporary file


def atomic_write(path: str | Path, write: Callable[[Any], object], mode: str = "w", *, durable: bool = False) -> None:
    """Call ``write(file)`` on a temporary file beside ``path``, then rename it into place.

    ``mode`` is ``"w"`` (text) or ``"wb"`` (bytes, e.g. ``torch.save``). ``durable`` flushes the file
    to disk before the rename (checkpoints: a crash of the machine leaves the old or the new file).
    """
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        write(f)
        if durable:
            f.flush()
            os.fsync(f.fileno())


MAX_CONFIG_BYTES = 16 << 20
"""Largest config, design or plugin file read (16 MB): a larger one (``/dev/zero``, a corpus passed as a
config) is refused after reading that much, not after filling the memory."""


def _read_up_to(f: Any, limit: int, chunk: int = 1 << 20) -> bytes:
    """At most ``limit`` bytes of a stream, read a megabyte at a time (nothing reserved up front)."""
    parts, total = [], 0
    while total < limit:
        part = f.read(min(chunk, limit - total))
        if not part:
            break
        parts.append(part)
        total += len(part)
    return b"".join(parts)


def read_text(path: str | Path, what: str = "file", max_bytes: int | None = MAX_CONFIG_BYTES) -> str:
    """The text of an input file, decoded as UTF-8; every failure is an :class:`InputError` naming the file.

    ``what`` says what the file is for ("config file", "corpus", ...). Every text input hlsm reads
    from the user (TOML configs and designs, JSONL corpora and records) goes through here; so
    ``example:NAME`` reads the packaged example of that name (:mod:`hlsm.examples`). At most
    ``max_bytes`` are read (None: what :data:`hlsm.limits.MEMORY_FRACTION` of memory holds as text).
    """
    from hlsm.limits import MEMORY_FRACTION, physical_memory

    path = resolve(path)
    cap = int(MEMORY_FRACTION * physical_memory() / 4) if max_bytes is None else max_bytes  # str: up to 4 B/char
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            size = st.st_size if stat.S_ISREG(st.st_mode) else None
            if size is not None and size > cap:
                raise InputError(f"{what} '{path}' is larger than {cap:,} bytes ({size:,}); is it the right file?")
            data = f.read() if size is not None else _read_up_to(f, cap + 1)  # a device or a pipe: in chunks
    except FileNotFoundError:
        raise InputError(f"{what} '{path}' does not exist; check the path") from None
    except IsADirectoryError:
        raise InputError(f"{what} '{path}' is a folder, not a file") from None
    except OSError as err:
        raise InputError(f"cannot read {what} '{path}': {err.strerror}") from None
    if len(data) > cap:
        raise InputError(f"{what} '{path}' is larger than {cap:,} bytes; is it the right file?")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(
            f"{what} '{path}' is not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); "
            "give a text file saved as UTF-8"
        ) from None


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    atomic_write(path, lambda f: f.write(text))


def json_safe(value: Any) -> Any:
    """JSON-safe: NaN and infinities become None (strict JSON has no such numbers), in nested dicts and lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json(
    path: str | Path, data: Any, *, indent: int | None = 2, default: Callable[[Any], Any] | None = None
) -> None:
    """Write ``data`` as JSON to ``path`` atomically (``default`` as in :func:`json.dump`)."""
    atomic_write(path, lambda f: json.dump(data, f, indent=indent, default=default))
