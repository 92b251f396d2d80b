"""Soak (slow): several ``hlsm`` processes started at once on overlapping run folders, killed at
random moments and resumed until done. Every finished run must equal an uninterrupted one bit for
bit, no folder may hold a mix of two runs, and a second writer of a folder is refused, never mixed in.
Bounded: three folders, at most 12 kills, a few minutes."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hlsm.examples import CONFIGS
from hlsm.lock import holder

pytestmark = pytest.mark.slow


def _config(tmp: Path) -> Path:
    text = (CONFIGS / "sft_tiny.toml").read_text().replace("steps = 200", "steps = 1500")
    path = tmp / "sft.toml"
    path.write_text(text.replace("checkpoint_every = 50", "checkpoint_every = 25"))
    return path


def _start(config: Path, out: Path, resume: bool) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "hlsm.app.cli", "train", "sft", "--config", str(config), "--out", str(out)]
    return subprocess.Popen(
        [*argv, *(["--resume"] if resume else [])], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "checkpoint.pt", weights_only=True)["model"]


def test_concurrent_killed_and_resumed_runs_end_as_uninterrupted_ones(tmp_path: Path) -> None:
    config = _config(tmp_path)
    reference = tmp_path / "reference"
    first = _start(config, reference, False)
    first.communicate(timeout=300)
    assert first.returncode == 0
    rng = random.Random(0)
    folders = [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
    kills, refused = 0, 0
    done: set[Path] = set()
    deadline = time.monotonic() + 600
    while len(done) < len(folders) and time.monotonic() < deadline:
        # every unfinished folder gets two writers at once: one runs, the other must be refused
        procs = []
        for out in folders:
            if out not in done:
                resume = (out / "checkpoint.pt").exists()
                procs += [(out, _start(config, out, resume)), (out, _start(config, out, resume))]
        if kills < 12:  # kill the writer that holds a folder, at a random moment of its run
            pids = {f"PID {proc.pid} " for _, proc in procs}
            started = time.monotonic()
            while not any(holder(out)[: holder(out).find("(")] in pids for out in folders):
                if time.monotonic() - started > 120:
                    break
                time.sleep(0.1)
            time.sleep(rng.uniform(0.5, 3.0))
            for out, proc in procs:
                if proc.poll() is None and holder(out).startswith(f"PID {proc.pid} ") and rng.random() < 0.7:
                    proc.send_signal(signal.SIGKILL)
                    kills += 1
        for out, proc in procs:
            _, err = proc.communicate(timeout=300)
            if proc.returncode == 0:
                done.add(out)
            elif proc.returncode == 2:
                assert b"is being written by PID" in err or b"already holds a run" in err, err.decode()
                refused += 1
            else:
                assert proc.returncode == -signal.SIGKILL, err.decode()
    assert done == set(folders) and kills > 0 and refused > 0
    expected = _weights(reference)
    for out in folders:
        got = _weights(out)
        assert all(torch.equal(got[k], expected[k]) for k in expected), out
        assert _log(out) == _log(reference), out  # one run's log, not two interleaved


def _log(out: Path) -> list[dict[str, object]]:
    """The metrics log without its timings (which differ between any two runs)."""
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("tokens_per_s", "elapsed_s")} for r in records]
