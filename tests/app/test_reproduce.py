"""`hlsm reproduce` (hlsm.app.reproduce): runs experiments as processes, resumes, reports failures, results.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import hlsm.sims
from hlsm.app.cli import main
from hlsm.app.reproduce import EXPERIMENTS, ON_REQUEST, ReproduceError, reproduce
from tests.conftest import TINY_REPRODUCTION


def test_every_sim_is_an_experiment() -> None:
    scripts = {p.stem for p in Path(hlsm.sims.__file__).parent.glob("*.py") if not p.stem.startswith("_")}
    assert scripts == set(EXPERIMENTS + ON_REQUEST), "list new sims in hlsm.app.reproduce.EXPERIMENTS"
    assert not set(EXPERIMENTS) & set(ON_REQUEST)


def test_reproduce_writes_results_and_resumes(tiny_reproduction: tuple[Path, Path, Any]) -> None:
    runs, docs, outcomes = tiny_reproduction
    assert [o.status for o in outcomes] == ["ran", "ran"]
    text = (docs / "results.md").read_text()
    assert "hlsm reproduce --scale tiny" in text and "## The exact and Bayesian views" in text
    assert "(figures/results/vi_vs_checker/confusion.png)" in text
    assert (docs / "figures" / "results" / "vi_vs_checker" / "confusion.png").stat().st_size > 0
    _, again = reproduce("tiny", runs=runs, docs=docs, only=list(TINY_REPRODUCTION), echo=False)
    assert [o.status for o in again] == ["cached", "cached"]
    assert [o.wall_s for o in again] == pytest.approx([o.wall_s for o in outcomes])


def test_failure_is_reported_and_does_not_stop_the_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sims = tmp_path / "fakesims"  # a package of stand-in experiments, importable by the child processes
    sims.mkdir()
    (sims / "__init__.py").write_text("")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # runs/ and docs/ default to the working directory
    (sims / "trace_distributions.py").write_text("import sys\nprint('boom')\nsys.exit(3)\n")
    fake = (
        "import sys, pathlib\nout = pathlib.Path(sys.argv[sys.argv.index('--out') + 1])\n"
        "(out / 'report.md').write_text('## fake\\n\\nok\\n')\n"
    )
    (sims / "vi_vs_checker.py").write_text(fake)
    (sims / f"{ON_REQUEST[0]}.py").write_text(fake)  # runs when named, although not in EXPERIMENTS
    only = ["trace_distributions", "vi_vs_checker", ON_REQUEST[0]]
    path, outcomes = reproduce("tiny", only=only, echo=False, package="fakesims")
    assert path == Path("docs") / "results.md" and (tmp_path / "runs" / "reproduce-tiny" / "outcomes.json").exists()
    assert [o.status for o in outcomes] == ["failed", "ran", "ran"]
    assert "exit code 3" in outcomes[0].error and "boom" in outcomes[0].error
    text = path.read_text()
    assert "Failed: exit code 3" in text and "## fake" in text


def test_bad_requests(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ReproduceError, match="unknown experiment"):
        reproduce("tiny", only=["nope"])
    (tmp_path / "file").write_text("")
    with pytest.raises(ReproduceError, match="--docs .* is a file"):
        reproduce("tiny", docs=tmp_path / "file", runs=tmp_path / "runs")
    assert main(["reproduce", "--scale", "tiny", "--only", "nope", "--runs", str(tmp_path)]) == 2
    assert "unknown experiment" in capsys.readouterr().err


def test_an_unwritable_docs_folder_is_refused_before_any_experiment_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    import hlsm.app.reproduce as reproduce_module

    docs = tmp_path / "docs"
    docs.mkdir()
    docs.chmod(0o555)
    if os.access(docs, os.W_OK):  # root writes anywhere: the file system's answer is simulated
        real = os.access
        monkeypatch.setattr(reproduce_module.os, "access", lambda p, m: False if Path(p) == docs else real(p, m))
    ran: list[str] = []
    monkeypatch.setattr(reproduce_module, "run_sim", lambda name, *a, **k: ran.append(name))
    try:
        with pytest.raises(ReproduceError, match="--docs .* cannot be written"):
            reproduce("tiny", runs=tmp_path / "runs", docs=docs / "sub", echo=False)
    finally:
        docs.chmod(0o755)
    assert ran == [] and not (tmp_path / "runs").exists()


def test_predictions_at_a_glance_come_from_the_saved_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sims = tmp_path / "fakesims"
    sims.mkdir()
    (sims / "__init__.py").write_text("")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    saved = {
        "predictions": [
            {"contrast": "a - b on unseen", "prediction": "a > b", "difference": 0.217, "low": 0.16, "high": 0.273}
            | {"detectable": 0.076, "outcome": "held"},
            {"contrast": "a - c on deep", "prediction": "a > c", "outcome": "not measured"},
        ]
    }
    (sims / "trace_distributions.py").write_text(
        "import json, sys, pathlib\nout = pathlib.Path(sys.argv[sys.argv.index('--out') + 1])\n"
        "(out / 'report.md').write_text('## fake\\n\\n| a table | nobody reads |\\n')\n"
        f"(out / 'results.json').write_text(json.dumps({saved!r}))\n"
    )
    path, outcomes = reproduce("tiny", only=["trace_distributions"], echo=False, package="fakesims")
    assert [o.status for o in outcomes] == ["ran"]
    text = path.read_text()
    assert "| `trace_distributions` | a - b on unseen | a > b | +21.7 [+16.0, +27.3] | 7.6 | **held** |" in text
    assert "| `trace_distributions` | a - c on deep | a > c | - | - | **not measured** |" in text


def test_each_finished_stage_and_arm_is_a_console_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The experiment's [experiment] lines reach the console as they come; the rest stays in its log."""
    from hlsm.lm.experiment import arm_line

    line = arm_line("sft", {0: {"splits": {"seen": {"accuracy": 0.5}}}, 1: {"splits": {"seen": {"accuracy": 1.0}}}})
    assert line == "arm 'sft' done: 2 seed(s); mean accuracy seen 75.0%"
    sims = tmp_path / "fakesims"
    sims.mkdir()
    (sims / "__init__.py").write_text("")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    (sims / "vi_vs_checker.py").write_text(
        "import sys, pathlib\nout = pathlib.Path(sys.argv[sys.argv.index('--out') + 1])\n"
        "print('training detail', flush=True)\n"
        f"print({'[experiment] ' + line!r}, file=sys.stderr, flush=True)\n"
        "(out / 'report.md').write_text('## fake\\n\\nok\\n')\n"
    )
    runs = tmp_path / "runs"
    _, outcomes = reproduce("tiny", runs=runs, docs=tmp_path / "docs", only=["vi_vs_checker"], package="fakesims")
    assert [o.status for o in outcomes] == ["ran"]
    printed = capsys.readouterr().out
    assert f"[reproduce] vi_vs_checker: {line}" in printed and "training detail" not in printed
    assert f"log: {runs / 'vi_vs_checker' / 'log.txt'}" in printed
    log = (runs / "vi_vs_checker" / "log.txt").read_text()
    assert "training detail" in log and line in log
