"""Writing results: atomic file writes and JSON helpers.

Results hlsm writes (corpora, checkpoints, metrics, reports, posteriors, exports) go through
:func:`atomic_path`: the content is written to a temporary file beside the target and renamed into
place, so a killed run or a failed write never leaves a partial output file, and an existing file is
replaced only by a complete one. (Figures, which are redrawn from results, and logs are written
directly.)
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hlsm.errors import InputError
from hlsm.examples import resolve


def _umask() -> int:
    """The process's umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error, rename it to ``path``.

    For writers that want a file name (``to_netcdf``). The parent folder is created. On any error the
    temporary file is removed; an :class:`OSError` is re-raised naming ``path``, not the temporary file.
    The file gets the mode a plain ``open(path, "w")`` would give (``0666`` less the umask).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from other users
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as err:  # name the output, not the temporary file
        tmp.unlink(missing_ok=True)
        raise OSError(err.errno, err.strerror, str(path)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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


def read_text(path: str | Path, what: str = "file") -> str:
    """The text of an input file, decoded as UTF-8; every failure is an :class:`InputError` naming the file.

    ``what`` says what the file is for ("config file", "corpus", ...). Every text input hlsm reads
    from the user (TOML configs and designs, JSONL corpora and records) goes through here; so
    ``example:NAME`` reads the packaged example of that name (:mod:`hlsm.examples`).
    """
    path = resolve(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{what} '{path}' does not exist; check the path") from None
    except IsADirectoryError:
        raise InputError(f"{what} '{path}' is a folder, not a file") from None
    except OSError as err:
        raise InputError(f"cannot read {what} '{path}': {err.strerror}") from None
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
