"""The one run-folder convention (hlsm.runfolder): what counts as finished and as resumable, the
refusals of --resume both ways, a fresh start, and the lock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hlsm.errors import HLSMError
from hlsm.lock import BusyError, lock_file
from hlsm.runfolder import FIT, SWEEP_CELL, TRAINING, RunFolder, experiment


class Refused(HLSMError):
    pass


def test_resume_is_refused_without_state_and_a_fresh_start_over_one(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "sft", TRAINING)
    run.check_resume(False, Refused)  # nothing there: a fresh start is fine
    with pytest.raises(Refused, match=r"--resume given but '.*sft' holds no checkpoint.pt; start without --resume"):
        run.check_resume(True, Refused)
    run.path.mkdir()
    (run.path / "checkpoint.pt").write_bytes(b"x")
    assert run.resumable() and not run.finished()
    run.check_resume(True, Refused)
    with pytest.raises(Refused, match=r"already holds a run \(checkpoint.pt\); pass --resume or choose another --out"):
        run.check_resume(False, Refused)
    fit = RunFolder(tmp_path / "fit", FIT)
    (tmp_path / "fit").mkdir()
    (tmp_path / "fit" / "fit_state.pt").write_bytes(b"x")
    fit.check_resume(False, Refused, overwrite=True)  # a fresh fit replaces the old one's state


def test_a_fresh_start_writes_the_config_and_drops_a_stale_log_and_result(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run", TRAINING)
    run.path.mkdir()
    run.metrics.write_text('{"step": 9}\n')
    run.result.write_text("{}")
    run.start({"training": {"steps": 3}})
    assert not run.metrics.exists() and not run.finished()
    assert json.loads((run.path / "config.json").read_text()) == {"training": {"steps": 3}}
    run.write_result({"step": 3})
    assert run.finished() and run.read_result() == {"step": 3}


def test_kinds_without_state_finish_by_their_result(tmp_path: Path) -> None:
    cell = RunFolder(tmp_path / "cells" / "a", SWEEP_CELL)
    assert cell.state is None and not cell.resumable()
    cell.path.mkdir(parents=True)
    cell.write_result({"x": 1})
    assert cell.finished() and cell.result.name == "result.json"
    done = RunFolder(tmp_path / "exp", experiment("cpu"))
    assert done.result.name == ".done-cpu.json" and not done.finished()


def test_the_folder_lock_is_the_writers_lock(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run", TRAINING)
    with run.lock():
        assert lock_file(run.path).exists()
        with run.lock():  # re-entrant in one process
            pass
    import subprocess
    import sys

    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from hlsm.runfolder import RunFolder, TRAINING\n"
            f"with RunFolder(Path({str(run.path)!r}), TRAINING).lock():\n    print('held', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(BusyError, match="run folder"), run.lock():
            pass
    finally:
        holder.kill()
        holder.communicate()
