"""One writer at a time (hlsm.lock): a second process is refused with the holder named, a dead
holder's lock is free, a process may take its own lock again, and the commands hold it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from hlsm.app.cli import main
from hlsm.examples import CONFIGS
from hlsm.lock import BusyError, holder, lock_file, writing

HOLD = """
import sys, time
from hlsm.lock import writing
with writing(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


@contextmanager
def held_elsewhere(target: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding ``target``'s lock until the block ends (then killed with SIGKILL)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(target)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_second_writer_is_refused_naming_the_holder_and_a_dead_holders_lock_is_free(tmp_path: Path) -> None:
    target = tmp_path / "run"
    with held_elsewhere(target) as proc:
        assert holder(target).startswith(f"PID {proc.pid} (")
        with pytest.raises(BusyError, match=rf"run folder '{target}' is being written by PID {proc.pid} \("):
            with writing(target, "run folder"):
                pass
        assert not target.exists()  # the lock lives beside the target and never creates it
    # the holder was killed (SIGKILL): the operating system released its lock
    assert lock_file(target).exists()
    with writing(target):
        assert holder(target).startswith(f"PID {os.getpid()} (")
    assert not lock_file(target).exists()  # released and removed


def test_a_process_may_take_its_own_lock_again(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    with writing(target), writing(tmp_path / "." / "out.jsonl"):  # one target, two spellings
        assert lock_file(target).exists()
    assert not lock_file(target).exists()
    with writing(target):  # free again after the nested release
        pass


def test_commands_refuse_a_target_another_process_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's cases: two writers of one training run folder, one corpus file, one fit folder."""
    monkeypatch.chdir(tmp_path)
    run, corpus, fit = tmp_path / "sft", tmp_path / "corpus.jsonl", tmp_path / "fit"
    commands = {
        run: ["train", "sft", "--config", str(CONFIGS / "sft_tiny.toml"), "--out", str(run)],
        corpus: ["simulate", "--n", "5", "--out", str(corpus)],
        fit: ["fit", "--design", "example:fit_control", "--out", str(fit)],
    }
    for target, argv in commands.items():
        with held_elsewhere(target) as proc:
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert f"is being written by PID {proc.pid}" in err and "Traceback" not in err
            assert not target.exists()  # nothing written, nothing interleaved


def test_a_waiting_writer_gets_the_lock_when_the_holder_leaves(tmp_path: Path) -> None:
    """The experiment cache's mode: wait for the run another experiment is training, then go on."""
    import threading
    import time

    target = tmp_path / "cache" / "sft-0"
    with held_elsewhere(target) as proc:
        start = time.monotonic()
        timer = threading.Timer(1.0, proc.kill)  # the holder leaves after a second
        timer.start()
        with writing(target, wait=True):
            assert holder(target).startswith(f"PID {os.getpid()} (")
        timer.join()
    assert time.monotonic() - start >= 0.9
