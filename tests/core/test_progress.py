"""Progress off a terminal (a log, CI): plain lines, the first, one per interval and the last."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import pytest

import hlsm.runtime as runtime


def test_off_a_terminal_a_bar_is_plain_lines_at_an_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    monkeypatch.setattr(runtime, "PLAIN_INTERVAL_S", 0.2)
    start = time.monotonic()
    for _ in runtime.progress_bar(iterable=range(20), desc="work"):
        time.sleep(0.03)  # 0.6 s at least: the first line, one or more at the interval, the last
    elapsed = time.monotonic() - start
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and all(line.startswith("work:") for line in lines)
    assert lines[0].startswith("work:   0%") and "100%" in lines[-1]
    assert 3 <= len(lines) <= elapsed / 0.2 + 3  # one per interval, not one per step (20)


def test_a_training_run_logged_to_a_file_shows_progress_without_carriage_returns(tmp_path: Path) -> None:
    with open(tmp_path / "log.txt", "w") as log:
        command = [sys.executable, "-m", "hlsm.app.cli", "train", "sft", "--config", "example:sft_tiny", "--out", "r"]
        assert subprocess.run(command, cwd=tmp_path, stdout=log, stderr=log, timeout=300).returncode == 0
    text = (tmp_path / "log.txt").read_text()
    assert "\r" not in text and "sft:   0%" in text and "sft: 100%" in text
