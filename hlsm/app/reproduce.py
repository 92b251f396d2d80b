"""``hlsm reproduce --scale cpu|gpu``: run every experiment of :mod:`hlsm.sims` and write ``docs/results.md``.

Each experiment is one module of ``sims/`` and runs as its own process
(``python -m hlsm.sims.<name> --scale S --out DIR``; the library never imports them), so a
reproduction works from an installed package as from a checkout. It writes ``DIR/results.json``,
its figures and ``DIR/report.md``. A finished
experiment leaves ``DIR/.done-<scale>.json`` (its wall time) and is skipped on the next call, so a
killed reproduction resumes where it stopped; ``force`` reruns everything. A failing experiment is
reported with the tail of its log and does not stop the others. The reports are then assembled into
``docs/results.md`` with the figures copied to ``docs/figures/results/<name>/`` (both relative to
the working directory unless ``runs`` / ``docs`` say otherwise).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

import torch

from hlsm.app.report import markdown_table, verdict_cell
from hlsm.errors import HLSMError
from hlsm.io import write_json, write_text
from hlsm.lock import writing
from hlsm.runfolder import RunFolder, experiment
from hlsm.scales import SCALES
from hlsm.stats import SeedVerdict

EXPERIMENTS = (
    "trace_distributions",
    "vi_vs_checker",
    "vi_at_scale",
    "three_views",
    "verify_claims",
    "finding1_rl_data",
    "finding2_interfaces",
    "dose_response",
    "finding3_rl_support",
    "finding4_sft_coverage",
    "learning_curves",
    "probe_transformer",
)
"""The experiments a reproduction runs, in the order they run (theory first; ``learning_curves`` reads the saved results
of ``verify_claims``, ``finding1_rl_data`` and ``finding3_rl_support``, and ``probe_transformer`` the
checkpoints of ``finding1_rl_data``, so they run last)."""

ON_REQUEST = ("finding2_absent_skill",)
"""Experiments that run only when ``only`` names them: ``finding2_absent_skill`` (can RL discover a skill
SFT never showed?) trains its own SFT runs and five RL arms, about ten minutes at the cpu scale, for a
variant that is not one of the paper's claims, so it stays out of the 60-minute reproduction."""

STAGED = (
    "finding1_rl_data",
    "finding2_interfaces",
    "finding2_absent_skill",
    "dose_response",
    "finding3_rl_support",
    "finding4_sft_coverage",
    "learning_curves",
)
"""The experiments whose training runs in stages (:func:`hlsm.lm.experiment.run_experiment`): they
take ``--backend`` and ``--address`` and send each stack of runs to the backend."""

BUDGET_S = 60 * 60
"""The wall-time budget of a reproduction at the cpu (2 cores) and gpu (one H100) scales."""


class ReproduceError(HLSMError):
    """A reproduction that cannot start; the message names the fix."""


@dataclass(frozen=True)
class Outcome:
    """One experiment's run: ``status`` is ``"ran"``, ``"cached"`` or ``"failed"``."""

    name: str
    status: str
    wall_s: float
    error: str = ""


PACKAGE = "hlsm.sims"
"""The package whose modules are the experiments."""


def _copy_log(proc: subprocess.Popen[str], log: TextIO, echo: str | None) -> None:
    """Copy an experiment's output to its log; with ``echo`` (its name), print its ``[experiment]`` lines."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if log.closed:  # the experiment ended; a process it left behind still writes: drop it
            return
        log.write(line)
        log.flush()
        if echo is not None and line.startswith("[experiment]"):
            print(f"[reproduce] {echo}: {line.removeprefix('[experiment]').strip()}", flush=True)


def run_sim(
    name: str,
    scale: str,
    out: Path,
    *,
    force: bool = False,
    package: str = PACKAGE,
    backend: str = "local",
    address: str = "",
    echo: bool = False,
) -> Outcome:
    """Run ``python -m <package>.<name>`` at ``scale`` into ``out`` unless a finished run is there;
    with ``echo``, its stage and arm lines (``[experiment] ...``) are printed as they come.

    A :data:`STAGED` experiment gets ``--backend`` and ``--address``: with ``backend = "ray"`` its
    stacks of training runs are Ray tasks on the cluster at ``address``."""
    folder = RunFolder(out, experiment(scale))
    if folder.finished() and not force:
        return Outcome(name, "cached", float(folder.read_result()["wall_s"]))
    out.mkdir(parents=True, exist_ok=True)
    folder.result.unlink(missing_ok=True)
    extra = ["--backend", backend, "--address", address] if name in STAGED and backend != "local" else []
    start = time.perf_counter()
    with open(out / "log.txt", "w") as log:
        proc = subprocess.Popen(
            # -P: the working directory is not put on sys.path, so a folder that holds another
            # hlsm/ (an old checkout, say) cannot shadow the installed package
            [sys.executable, "-P", "-m", f"{package}.{name}", "--scale", scale, "--out", str(out), *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            text=True,
            errors="replace",
        )
        # the whole log to the file, its stage and arm lines to the console; read beside the wait, so
        # that a process the experiment leaves behind holding the pipe cannot hold the reproduction
        reader = threading.Thread(target=_copy_log, args=(proc, log, name if echo else None), daemon=True)
        reader.start()
        try:
            proc.wait()
        except BaseException:  # Ctrl-C or an error here: the experiment does not outlive the command
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
        finally:
            reader.join(timeout=5)
            if not reader.is_alive() and proc.stdout is not None:
                proc.stdout.close()
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not (out / "report.md").exists():
        tail = (out / "log.txt").read_text()[-2000:]
        return Outcome(name, "failed", wall, f"exit code {proc.returncode}; log tail:\n{tail}")
    folder.write_result({"wall_s": wall}, indent=None)
    return Outcome(name, "ran", wall)


def _machine() -> str:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, {gpu}, torch {torch.__version__}"


def _collect(name: str, out: Path, docs: Path) -> str:
    """The experiment's report with its figures copied under ``docs`` and the links rewritten."""
    figures = docs / "figures" / "results" / name
    figures.mkdir(parents=True, exist_ok=True)
    for png in out.glob("*.png"):
        shutil.copy2(png, figures / png.name)
    text = (out / "report.md").read_text()
    return re.sub(r"\]\(([^)/\s]+\.png)\)", lambda m: f"](figures/results/{name}/{m.group(1)})", text)


def _predictions(results: Path) -> list[tuple[str, str, str, str, str]]:
    """``(contrast, prediction, mean [95% CI], detectable, verdict)`` cells of every prediction an
    experiment saved in its ``results.json`` (``predictions``; none for an experiment without)."""
    if not results.exists():
        return []
    saved = json.loads(results.read_text())
    rows = saved.get("predictions", []) if isinstance(saved, dict) else []
    out = []
    for r in rows:
        if r.get("difference") is None or r.get("low") is None:
            mean = "-"
        else:
            mean = f"{100 * r['difference']:+.1f} [{100 * r['low']:+.1f}, {100 * r['high']:+.1f}]"
        detectable = "-" if r.get("detectable") is None else f"{100 * r['detectable']:.1f}"
        decided = r["outcome"] != "not resolved"
        verdict = f"**{r['outcome']}**" if decided else verdict_cell(SeedVerdict.from_dict(r))
        out.append((r["contrast"], r["prediction"], mean, detectable, verdict))
    return out


def write_results(scale: str, outcomes: Sequence[Outcome], runs: Path, docs: Path) -> Path:
    """Assemble ``docs/results.md`` from the experiments' reports and the run table."""
    total = sum(o.wall_s for o in outcomes)
    rows = [(o.name, o.status, f"{o.wall_s / 60:.1f} min") for o in outcomes]
    within = "within" if total <= BUDGET_S else "OVER"
    parts = [
        "# Results\n",
        f"Regenerated by `hlsm reproduce --scale {scale}` on {time.strftime('%Y-%m-%d')} ({_machine()}).",
        f"Total wall time {total / 60:.1f} min ({within} the {BUDGET_S // 60}-minute budget; cached runs count",
        "the time they took when they ran). Every number below is read from the experiments' saved",
        f"`results.json` under `{runs}/`; each section states the claim it tests and whether it held.\n",
        markdown_table(("experiment", "status", "wall time"), rows),
    ]
    sections = {o.name: _collect(o.name, runs / o.name, docs) for o in outcomes if o.status != "failed"}
    verdicts = [(f"`{name}`", *row) for name in sections for row in _predictions(runs / name / "results.json")]
    if verdicts:
        parts += [
            "\n## Predictions at a glance\n",
            "Every prediction the experiments test: the mean over seeds of the per-seed paired differences in",
            "points with its 95% t interval over seeds (example noise and seed-to-seed variance both in it), the",
            "smallest effect the design could detect (80% power) and the verdict (held: interval above 0;",
            "refuted: below 0; no effect: inside the equivalence margin; not resolved: none of these). The",
            "sections below give the tables behind them, with the SFT quality of every seed.\n",
            markdown_table(
                ("experiment", "contrast", "prediction", "mean [95% CI]", "detectable", "verdict"), verdicts
            ),
        ]
    for o in outcomes:
        if o.status == "failed":
            parts.append(f"\n## {o.name}\n\nFailed: {o.error.splitlines()[0]} (see `{runs / o.name / 'log.txt'}`).\n")
        else:
            parts.append("\n" + sections[o.name])
    path = docs / "results.md"
    write_text(path, "\n".join(parts))
    return path


def reproduce(
    scale: str,
    *,
    runs: str | Path | None = None,
    docs: str | Path | None = None,
    only: Sequence[str] | None = None,
    force: bool = False,
    echo: bool = True,
    package: str = PACKAGE,
    backend: str = "local",
    address: str = "",
) -> tuple[Path, list[Outcome]]:
    """Run the experiments at ``scale`` and write ``docs/results.md``: :data:`EXPERIMENTS`, or ``only``
    (which may name :data:`ON_REQUEST` ones).

    ``runs`` defaults to ``runs/reproduce-<scale>`` and ``docs`` to ``docs``, under the working
    directory: from a checkout that regenerates the repository's ``docs/results.md``; elsewhere it
    makes those two folders where it is run. ``backend = "ray"`` sends the training stages of the
    :data:`STAGED` experiments to the Ray cluster at ``address`` ("" starts one on this machine);
    the other experiments run here.
    """
    if backend not in ("local", "ray"):
        raise ReproduceError(f"unknown backend {backend!r}; use local or ray")
    if scale not in SCALES:
        raise ReproduceError(f"unknown scale {scale!r}; use one of {SCALES}")
    names = list(only or EXPERIMENTS)
    unknown = [n for n in names if n not in EXPERIMENTS + ON_REQUEST]
    if unknown:
        raise ReproduceError(f"unknown experiment(s) {unknown}; choose from {list(EXPERIMENTS + ON_REQUEST)}")
    runs_dir = Path(runs) if runs is not None else Path("runs") / f"reproduce-{scale}"
    docs_dir = Path(docs) if docs is not None else Path("docs")
    for option, folder in (("--runs", runs_dir), ("--docs", docs_dir)):
        if folder.exists() and not folder.is_dir():
            raise ReproduceError(f"{option} '{folder}' is a file; give a folder (it is made if missing)")
        existing = next(p for p in (folder.absolute(), *folder.absolute().parents) if p.exists())
        if not os.access(existing, os.W_OK | os.X_OK):  # refused now, not after an hour of experiments
            raise ReproduceError(f"{option} '{folder}' cannot be written ('{existing}' is read-only for this user)")
    with writing(runs_dir, "reproduction folder"):
        outcomes = []
        for name in names:
            if echo:
                print(f"[reproduce] {name} ({scale}) ... log: {runs_dir / name / 'log.txt'}", flush=True)
            outcome = run_sim(
                name, scale, runs_dir / name, force=force, package=package, backend=backend, address=address, echo=echo
            )
            if echo:
                print(f"[reproduce] {name}: {outcome.status} in {outcome.wall_s / 60:.1f} min", flush=True)
            outcomes.append(outcome)
        path = write_results(scale, outcomes, runs_dir, docs_dir)
        write_json(runs_dir / "outcomes.json", [asdict(o) for o in outcomes])
        return path, outcomes
