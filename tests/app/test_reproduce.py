"""`hlsm reproduce` (hlsm.app.reproduce): runs experiments as processes, resumes, reports failures, results.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from hlsm.app.cli import main
from hlsm.app.reproduce import EXPERIMENTS, ReproduceError, reproduce

ROOT = Path(__file__).resolve().parents[2]


def test_every_sim_is_an_experiment() -> None:
    scripts = {p.stem for p in (ROOT / "sims").glob("*.py")}
    assert scripts == set(EXPERIMENTS), "list new sims in hlsm.app.reproduce.EXPERIMENTS"


def test_reproduce_writes_results_and_resumes(tmp_path: Path) -> None:
    runs, docs = tmp_path / "runs", tmp_path / "docs"
    only = ["trace_distributions", "vi_vs_checker"]
    path, outcomes = reproduce("tiny", root=ROOT, runs=runs, docs=docs, only=only, echo=False)
    assert [o.status for o in outcomes] == ["ran", "ran"]
    text = path.read_text()
    assert "hlsm reproduce --scale tiny" in text and "## The exact and Bayesian views" in text
    assert "(figures/results/vi_vs_checker/confusion.png)" in text
    assert (docs / "figures" / "results" / "vi_vs_checker" / "confusion.png").stat().st_size > 0
    _, again = reproduce("tiny", root=ROOT, runs=runs, docs=docs, only=only, echo=False)
    assert [o.status for o in again] == ["cached", "cached"]
    assert [o.wall_s for o in again] == pytest.approx([o.wall_s for o in outcomes])


def test_failure_is_reported_and_does_not_stop_the_others(tmp_path: Path) -> None:
    sims = tmp_path / "sims"
    sims.mkdir()
    (sims / "trace_distributions.py").write_text("import sys\nprint('boom')\nsys.exit(3)\n")
    (sims / "vi_vs_checker.py").write_text(
        "import sys, pathlib\nout = pathlib.Path(sys.argv[sys.argv.index('--out') + 1])\n"
        "(out / 'report.md').write_text('## fake\\n\\nok\\n')\n"
    )
    path, outcomes = reproduce("tiny", root=tmp_path, only=["trace_distributions", "vi_vs_checker"], echo=False)
    assert [o.status for o in outcomes] == ["failed", "ran"]
    assert "exit code 3" in outcomes[0].error and "boom" in outcomes[0].error
    text = path.read_text()
    assert "Failed: exit code 3" in text and "## fake" in text


def test_bad_requests(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ReproduceError, match="no sims/ folder"):
        reproduce("tiny", root=tmp_path)
    with pytest.raises(ReproduceError, match="unknown experiment"):
        reproduce("tiny", root=ROOT, only=["nope"])
    assert main(["reproduce", "--scale", "tiny", "--only", "nope", "--runs", str(tmp_path)]) == 2
    assert "unknown experiment" in capsys.readouterr().err
