"""The CPU size study: finding 1 at the cpu scale for each model size, on tuning seeds only.

Runs ``hlsm.sims.finding1_rl_data --scale cpu --size S --seeds 100 101 102`` for every size given
(default 0.2M, 0.6M and 1.2M of ``hlsm.lm.presets.MODEL_LADDER``), each into
``OUT/S/finding1_rl_data`` with its own SFT/RL cache, so an interrupted study resumes where it
stopped. Then writes ``OUT/table.md``: parameters, the step each seed passed the calibration gate,
SFT accuracy on seen and unseen compositions, and the paired compound - atomic and atomic - SFT
differences (mean over seeds with a 95% t interval, seed spread counted). The table in
docs/howto/experiments.md section 5 is this file.

Usage: ``python scripts/size_study.py [--sizes 0.2M 0.6M 1.2M] [--seeds 100 101 102] [--out runs/size-study]``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hlsm.sims import finding1_rl_data


def parameters(results: dict) -> int:
    """The parameter count of the experiment's model, as its first SFT run recorded it."""
    run = Path(next(iter(results["runs"]["sft"].values())))
    return int(json.loads((run / "config.json").read_text())["num_params"])


def interval(contrast: dict, split: str) -> str:
    if split not in contrast:  # the tiny scale has no depth-4 split
        return "–"
    c = contrast[split]["interval"]
    return f"{100 * c['mean']:+.1f} [{100 * c['low']:+.1f}, {100 * c['high']:+.1f}]"


def row(size: str, results: dict, minutes: float | None) -> str:
    gates = results["calibration"]["sft"]
    steps = sorted(int(g["step"]) for g in gates.values())
    passed = sum(bool(g["passed"]) for g in gates.values())
    sft = results["summary"]["sft"]
    c = results["contrasts"]
    ca, asft = c["sft+rl compound - sft+rl atomic"], c["sft+rl atomic - sft"]
    gap = 100 * (sft["seen"]["mean"] - sft["unseen"]["mean"])
    time_cell = f"{minutes:.0f} min" if minutes is not None else "–"
    return (
        f"| {size} | {parameters(results):,} | {', '.join(map(str, steps))} ({passed}/{len(steps)} passed) "
        f"| {100 * sft['unseen']['mean']:.1f}% ({gap:.1f} points) | {interval(ca, 'unseen')} "
        f"| {interval(ca, 'deeper_4')} | {interval(asft, 'deeper_4')} | {time_cell} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["0.2M", "0.6M", "1.2M"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102])
    parser.add_argument("--out", default="runs/size-study")
    parser.add_argument("--scale", default="cpu", help="tiny: a smoke test of this script")
    args = parser.parse_args()
    out = Path(args.out)
    rows = []
    for size in args.sizes:
        folder = out / size
        timing = folder / "minutes.json"
        # a wall time is known only for a rung run from an empty cache in one go; a resumed rung
        # (its cache already partly there) records none, and a cached rerun keeps the first one's
        fresh = not (folder / "cache").exists()
        start = time.perf_counter()
        cfg = finding1_rl_data.Config(
            scale=args.scale,
            seeds=tuple(args.seeds),
            size=size,
            out=str(folder / "finding1_rl_data"),
            cache=str(folder / "cache"),
        )
        finding1_rl_data.main(cfg)
        minutes = (time.perf_counter() - start) / 60
        if fresh or not timing.exists():
            timing.write_text(json.dumps({"minutes": minutes if fresh else None}))
        results = json.loads((folder / "finding1_rl_data" / "results.json").read_text())
        rows.append(row(size, results, json.loads(timing.read_text())["minutes"]))
        print(f"{size}: done", flush=True)
    header = (
        "| model | parameters | gate passed at step | unseen after SFT (gap to seen) "
        "| compound − atomic, unseen | compound − atomic, depth 4 | atomic − SFT, depth 4 | wall time |\n"
        "|---|---|---|---|---|---|---|---|\n"
    )
    (out / "table.md").write_text(header + "\n".join(rows) + "\n")
    print((out / "table.md").read_text())


if __name__ == "__main__":
    main()
