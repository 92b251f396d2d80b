"""Regimes compared in one step (``hlsm identify --design A.toml --compare B.toml ...``).

Each design file is a regime: a spec, supports (what SFT shows, what RL explores) and candidates.
Every regime is judged by the exact checker, and the verdicts are laid out as one table, one row per
candidate program (the union of the regimes' candidates, in order of first appearance), one column
per regime: ``in G`` (identified), ``not`` or ``-`` (not a candidate of that regime); the rows
where the regimes differ are the point, and come first. What a regime adds over the first is the
candidates it identifies that the first does not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hlsm.app.designfile import load_design
from hlsm.app.report import markdown_table
from hlsm.config import ConfigError
from hlsm.identify.checker import identify


def compare_regimes(
    paths: Sequence[str | Path], hypothesis_class: str = "lib", overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The candidate x regime verdicts of the design files ``paths`` (one library for all; ``overrides``,
    ``--set``, set on each).

    Returns ``{"class", "regimes": [{"name", "design", "traces", "candidates", "identified"}],
    "rows": [{"program", "verdicts": {regime: True | False | None}}], "adds": {regime: [program]}}``.
    """
    if len(paths) < 2:
        raise ConfigError("--compare needs at least one design beside --design")
    names = [Path(str(p).removeprefix("example:")).stem for p in paths]
    if len(set(names)) != len(names):
        names = [f"{i + 1}:{n}" for i, n in enumerate(names)]
    designs = [load_design(p, overrides) for p in paths]
    spec = designs[0].spec
    for path, design in zip(paths[1:], designs[1:], strict=True):
        if design.spec != spec:
            raise ConfigError(f"'{path}' has another [spec] than '{paths[0]}'; regimes compare one library")
    verdicts: dict[str, dict[str, bool]] = {}
    regimes = []
    for name, path, design in zip(names, paths, designs, strict=True):
        result = identify(spec, design.corpus(), design.candidates, hypothesis_class, horizon=design.horizon)
        judged = {v.program.names(spec): v.identified for v in result.verdicts}
        verdicts[name] = judged
        regimes.append(
            {
                "name": name,
                "design": str(path),
                "candidates": len(judged),
                "identified": sum(judged.values()),
                "exact": result.exact,
            }
        )
    programs = list(dict.fromkeys(p for judged in verdicts.values() for p in judged))
    rows = [{"program": p, "verdicts": {n: verdicts[n].get(p) for n in names}} for p in programs]
    first = names[0]
    adds = {n: [p for p in programs if verdicts[n].get(p) and not verdicts[first].get(p)] for n in names[1:]}
    return {"class": hypothesis_class, "regimes": regimes, "rows": rows, "adds": adds}


def differing(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows whose verdict differs between the regimes that judge them."""
    return [r for r in record["rows"] if len({v for v in r["verdicts"].values() if v is not None}) > 1]


def comparison_table(record: dict[str, Any], limit: int | None = 40) -> str:
    """The rows that differ between regimes as a markdown table (the first ``limit``; None: all), a
    total row, and a line counting the rows every regime judges alike."""
    names = [r["name"] for r in record["regimes"]]
    cell = {True: "in G", False: "not", None: "-"}
    differs = differing(record)
    rows = [(f"`{row['program']}`", *(cell[row["verdicts"][n]] for n in names)) for row in differs]
    shown = rows if limit is None else rows[:limit]
    totals = ("**identified**", *(f"**{r['identified']} / {r['candidates']}**" for r in record["regimes"]))
    text = markdown_table(("candidate (verdicts differ)", *names), [*shown, totals])
    if limit is not None and len(rows) > limit:
        text += f"\n({len(rows) - limit} more differing rows in the JSON output)"
    ids = {id(r) for r in differs}
    alike = [r for r in record["rows"] if id(r) not in ids]
    in_all = sum(any(v for v in r["verdicts"].values()) for r in alike)
    text += (
        f"\n\n{len(alike)} more candidates get the same verdict wherever they are judged: "
        f"{in_all} identified, {len(alike) - in_all} not."
    )
    return text
