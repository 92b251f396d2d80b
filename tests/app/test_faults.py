"""Faults of the environment, not of the input: targets that are not regular files, a file-size limit
(as a full disk would), Ctrl-C. Each ends in exit code 2 (130 for Ctrl-C), one message naming the
path and the reason, no traceback, no partial file, and earlier results untouched."""

from __future__ import annotations

import functools
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hlsm.app.cli import main
from hlsm.examples import CONFIGS
from hlsm.io import OutputError, atomic_write, check_target, write_text


def _leftovers(folder: Path) -> list[str]:
    """Temporary or lock files a failed write would leave."""
    return sorted(p.name for p in folder.rglob(".*") if p.name.endswith((".tmp", ".lock")))


# -- targets that are not regular files


def test_check_target_passes_new_paths_and_regular_files_and_refuses_the_rest(tmp_path: Path) -> None:
    regular = tmp_path / "results.json"
    regular.write_text("{}")
    check_target(regular)
    check_target(tmp_path / "new.json")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link").symlink_to(regular)
    refused = {
        tmp_path / "fifo": "a FIFO",
        tmp_path / "link": "a symbolic link",
        tmp_path: "a folder",
        Path("/dev/null"): "a character device",
    }
    for target, kind in refused.items():
        with pytest.raises(OutputError, match=f"'{re.escape(str(target))}' exists and is {kind}, not a regular file"):
            check_target(target)
    write_text(regular, "new")  # a regular file is replaced, whole
    assert regular.read_text() == "new"


def test_commands_refuse_a_device_a_fifo_and_a_link_and_leave_them_as_they_were(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "mine").mkdir()
    kept = tmp_path / "kept.toml"
    kept.write_text("# my own file\n")
    (tmp_path / "mine" / "sft_tiny.toml").symlink_to(kept)
    cases = {
        "a character device": ["simulate", "--n", "5", "--out", "/dev/null"],
        "a FIFO": ["simulate", "--n", "5", "--out", str(tmp_path / "fifo")],
        "a symbolic link": ["examples", "copy", "sft_tiny", "--to", str(tmp_path / "mine"), "--overwrite"],
    }
    for kind, argv in cases.items():
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert f"exists and is {kind}, not a regular file" in err and "Traceback" not in err
    assert Path("/dev/null").is_char_device() and (tmp_path / "fifo").is_fifo()
    assert kept.read_text() == "# my own file\n"  # nothing written through the link
    assert _leftovers(tmp_path) == [] and not Path("/dev/.null.lock").exists()


# -- a file-size limit, as a full disk or a quota would be


def _limited(argv: list[str], cwd: Path, kilobytes: int) -> subprocess.CompletedProcess[str]:
    """``hlsm ARGV`` in a process whose files may not grow past ``kilobytes``."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (kilobytes * 1024, kilobytes * 1024))

    command = [sys.executable, "-m", "hlsm.app.cli", *argv]
    return subprocess.run(command, cwd=cwd, preexec_fn=limit, capture_output=True, text=True, timeout=300)


def test_a_file_size_limit_is_one_message_naming_the_file_and_leaves_no_partial_file(tmp_path: Path) -> None:
    earlier = tmp_path / "corpus.jsonl"
    earlier.write_text("earlier result\n")
    done = _limited(["simulate", "--n", "20000", "--out", str(earlier)], tmp_path, 64)
    assert done.returncode == 2, done.stderr
    assert f"cannot write '{earlier}': the file would exceed the file-size limit (ulimit -f)" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert earlier.read_text() == "earlier result\n" and _leftovers(tmp_path) == []

    done = _limited(["examples", "copy", "default_library", "--to", "mine"], tmp_path, 1)
    assert done.returncode == 2 and "cannot write" in done.stderr and "default_library.toml" in done.stderr
    assert "file-size limit" in done.stderr and not (tmp_path / "mine" / "default_library.toml").exists()

    config = (CONFIGS / "sft_tiny.toml").read_text()  # checkpoints of a tiny model: tens of kilobytes
    (tmp_path / "sft.toml").write_text(config)
    run = tmp_path / "sft"
    done = _limited(["train", "sft", "--config", "sft.toml", "--out", str(run)], tmp_path, 8)
    assert done.returncode == 2, done.stderr
    assert re.search(r"cannot write '[^']*checkpoint\.pt': the file would exceed the file-size limit", done.stderr)
    assert "Traceback" not in done.stderr and "RuntimeError" not in done.stderr
    assert _leftovers(tmp_path) == []


def test_a_write_that_fails_inside_a_writer_names_the_output(tmp_path: Path) -> None:
    """torch.save wraps a failed write in a RuntimeError; the cause is found and the output named."""
    target = tmp_path / "x.bin"

    def failing(f: object) -> None:
        try:
            raise OSError(28, "No space left on device")
        except OSError as err:
            raise RuntimeError("[enforce fail] unexpected pos") from err

    with pytest.raises(OutputError, match=f"cannot write '{re.escape(str(target))}': the disk is full"):
        atomic_write(target, failing, mode="wb")
    with pytest.raises(RuntimeError, match="not an I/O error"):  # the other direction: a bug stays a bug
        atomic_write(target, lambda f: (_ for _ in ()).throw(RuntimeError("not an I/O error")), mode="wb")
    assert not target.exists() and _leftovers(tmp_path) == []


# -- Ctrl-C


def test_ctrl_c_is_one_line_saying_what_was_kept_and_exit_130(tmp_path: Path) -> None:
    config = (CONFIGS / "sft_tiny.toml").read_text().replace("steps = 200", "steps = 100000")
    (tmp_path / "long.toml").write_text(config)
    run = tmp_path / "sft"
    command = [sys.executable, "-m", "hlsm.app.cli", "train", "sft", "--config", "long.toml", "--out", str(run)]
    # A shell's background job (``pytest &``, nohup) ignores SIGINT and its children inherit that;
    # the command under test gets the default disposition a terminal's foreground job has.
    restore = functools.partial(signal.signal, signal.SIGINT, signal.SIG_DFL)
    proc = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=restore
    )
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoint.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (run / "checkpoint.pt").exists()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "interrupted; the last checkpoint is kept; the same command with --resume continues from it" in err
    assert not (tmp_path / ".sft.lock").exists()
