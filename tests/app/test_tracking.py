"""--tensorboard: the numbers of metrics.jsonl (and a fit's loss history) as TensorBoard scalars,
equal to the logged ones at float32 (what TensorBoard stores); nothing without the option; a clear
error without the package."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hlsm.app.cli import main
from hlsm.examples import CONFIGS, example_path
from hlsm.tracking import scalars

pytest.importorskip("tensorboard", reason="the tensorboard extra (pip install 'hlsm[tensorboard]') is not installed")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def _events(folder: Path) -> dict[str, dict[int, float]]:
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def test_training_metrics_are_mirrored_exactly(tmp_path: Path) -> None:
    out = tmp_path / "sft"
    config = str(CONFIGS / "sft_tiny.toml")
    assert (
        main(["train", "sft", "--config", config, "--out", str(out), "--set", "training.steps=40", "--tensorboard"])
        == 0
    )
    events = _events(out / "tensorboard")
    expected: dict[str, dict[int, float]] = {}
    for line in (out / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        numbers = scalars({k: v for k, v in record.items() if k not in ("kind", "step")})
        for tag, value in numbers.items():
            expected.setdefault(f"{record['kind']}/{tag}", {})[record["step"]] = float(np.float32(value))
    assert {"train/loss", "eval/splits/unseen/accuracy"} <= set(expected)
    assert events == expected
    plain = tmp_path / "plain"
    assert main(["train", "sft", "--config", config, "--out", str(plain), "--set", "training.steps=5"]) == 0
    assert not (plain / "tensorboard").exists()


def test_a_fit_logs_each_restarts_loss(tmp_path: Path) -> None:
    out = tmp_path / "fit"
    design = str(example_path("fit_tiny"))
    argv = ["fit", "--design", design, "--out", str(out), "--quiet", "--set", "fit.steps=20", "--tensorboard"]
    assert main(argv) == 0
    events = _events(out / "tensorboard")
    params = torch.load(out / "params.pt", weights_only=True)
    for r, restart in enumerate(params["restarts"]):
        history = {step: float(np.float32(v)) for step, v in enumerate(restart["history"])}
        assert events[f"fit/restart_{r}/loss"] == history


def test_without_the_package_the_option_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    out = tmp_path / "sft"
    argv = ["train", "sft", "--config", str(CONFIGS / "sft_tiny.toml"), "--out", str(out), "--tensorboard"]
    assert main(argv) == 2
    assert "--tensorboard needs the tensorboard package: pip install 'hlsm[tensorboard]'" in capsys.readouterr().err
    assert not out.exists()


def test_a_resumed_run_drops_the_scalars_after_its_checkpoint(tmp_path: Path) -> None:
    """As truncate_metrics drops the log lines after the checkpoint, resumed() drops their scalars:
    each step shows once, with the resumed run's value."""
    from hlsm.tracking import log_record, resumed, tensorboard

    with tensorboard():
        for step in range(1, 6):
            log_record(tmp_path, {"kind": "train", "step": step, "loss": float(step)})
    with tensorboard():
        resumed(tmp_path, 2)  # killed after step 5, resumed from the checkpoint of step 2
        for step in range(3, 6):
            log_record(tmp_path, {"kind": "train", "step": step, "loss": 10.0 * step})
    acc = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    events = [(e.step, e.value) for e in acc.Scalars("train/loss")]
    assert events == [(1, 1.0), (2, 2.0), (3, 30.0), (4, 40.0), (5, 50.0)]  # without resumed(): 3-5 twice
