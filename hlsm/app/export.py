"""Export a design's prompts to LLM trainers (verl, TRL) and score an LLM's generations back.

:func:`export_design` writes two parquet files to a folder:

``train.parquet``
    the RL prompts: every program of the design's ``rl`` split on ``inputs`` random ``x_0`` each;
``test.parquet``
    the evaluation prompts: every split of :func:`hlsm.lm.evaluate.design_splits` (``seen``,
    ``unseen``, ``deeper_<d>``, ``atomic``, ``rl``), ``inputs`` random ``x_0`` per program, drawn
    independently of the training file's.

plus ``export.json`` (spec, design config, task format, row counts). Each row's task is the trace
prompt ``x_0 | symbols`` of :func:`hlsm.traces.render_prompt` (the transformer's prompt, in the
design's :class:`hlsm.lm.TaskFormat`; plain symbols by default), preceded by an instruction that
explains the trace format and the modules of the spec, and followed by the answer format, so a
pretrained LLM can follow it. The ground truth is the final state ``x_L`` of the program's
execution (:func:`hlsm.programs.execute`), as letters.

Column layouts
--------------
verl (``data.train_files``/``data.val_files`` of ``verl.trainer.main_ppo``)
    ``data_source`` ("hlsm/<split>": verl's validation metrics are per data source), ``prompt`` (chat
    messages ``[{"role": "user", "content": ...}]``),
    ``ability`` ("reasoning"), ``reward_model`` (``{"style": "rule", "ground_truth": x_L}``),
    ``extra_info`` (``{"split", "program", "depth", "index", "hlsm"}``).
trl (``GRPOTrainer``)
    ``prompt`` (conversational: the same message list), ``ground_truth``, ``split``, ``program``,
    ``depth``, ``index``, ``hlsm``.

``hlsm`` is a JSON string (spec, task format, trace prompt) that :mod:`hlsm.app.rewards` needs for the
strict parse. :func:`score_generations` reads generations back (JSONL or parquet, either layout)
and reports exact-match accuracy with its binomial standard error per split.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from hlsm.app.rewards import completion_text, judge
from hlsm.config import ConfigError, build_dataclass, check_sections, load_toml
from hlsm.design import DesignConfig, SupportDesign, make_design
from hlsm.errors import HLSMError
from hlsm.examples import resolve
from hlsm.io import atomic_write, read_text, write_text
from hlsm.lm.data import TaskFormat
from hlsm.lm.dataset import derive_seed
from hlsm.lm.evaluate import design_splits
from hlsm.lock import writing
from hlsm.programs import Program, ProgramBatch, execute
from hlsm.spec import LETTERS, Spec
from hlsm.stats import binomial_se
from hlsm.traces import HIDDEN, NOP, PROMPT_SEP, STEP_SEP, render_prompt

FORMATS = ("verl", "trl")
DATA_SOURCE = "hlsm"
ABILITY = "reasoning"
PLAIN = TaskFormat(slots=None)
"""The default task format of an export: plain program symbols (no ``NOP`` slots), no echo."""


class ExportError(HLSMError):
    """An export that cannot be written as asked (unknown format, no RL programs, bad generations file)."""


def load_export_design(
    path: str | Path, overrides: Mapping[str, Any] | None = None
) -> tuple[Spec, SupportDesign, TaskFormat]:
    """Read a design file of the one schema ``identify``, ``fit`` and ``export`` share
    (:data:`hlsm.app.designfile.DESIGN_SECTIONS`), with an optional ``[format]`` (default: :data:`PLAIN`).

    A file with ``[design]`` alone is drawn as the transformer experiments draw it (its splits and
    training depth); a file that lists ``[sft]``, ``[rl]`` or ``[candidates]`` is read as ``identify``
    reads it, its candidates split into ``unseen`` and ``deeper``
    (:func:`hlsm.app.designfile.support_design`). ``overrides`` (``--set``) are set first. Errors name
    the file and the key.
    """
    from hlsm.app.designfile import DESIGN_SECTIONS, parse_design, support_design

    raw = load_toml(path, overrides)
    try:
        check_sections(raw, DESIGN_SECTIONS)
        fmt = build_dataclass(TaskFormat, {"slots": None, **raw.get("format", {})}, "format")
        listed = any(k in raw for k in ("sft", "rl", "candidates"))
        if not listed and "design" not in raw:  # not silently the default design
            raise ConfigError(
                "it has no [design] (drawn supports) and no [sft], [rl] or [candidates] (listed programs); "
                "add one (`hlsm examples show fit_tiny` shows a file with listed programs)"
            )
        if listed:
            parsed = parse_design(raw, f"design file '{path}'", resolve(path).parent)
            spec, design = parsed.spec, support_design(parsed)
        else:
            spec = Spec.from_dict(dict(raw.get("spec", {})))
            design = make_design(spec, DesignConfig.from_dict(raw.get("design", {})))
    except HLSMError as err:
        message = str(err)
        raise ConfigError(message if str(path) in message else f"design file '{path}': {message}") from None
    return spec, design, fmt


def instruction(spec: Spec, fmt: TaskFormat) -> str:
    """The task explanation that precedes every prompt: states, symbols, modules, answer format."""
    letters = ", ".join(LETTERS[: spec.alphabet])
    lines = [
        "A program transforms a string step by step. Every state is a string of exactly "
        f"n = {spec.length} letters from the alphabet {{{letters}}} of A = {spec.alphabet} letters (letter i stands "
        "for the number i, from 0).",
        f"A problem is written `x0 {PROMPT_SEP} program`: the input state x0, then the program's symbols. A "
        "step is a routing symbol R* followed by a skill symbol S*: the routing builds the step's input from "
        "earlier states (x0, x1, ...; a state that does not exist yet is x0) and the skill transforms it "
        "into the step's result. A program of a single skill symbol applies it to x0.",
    ]
    if fmt.slots is not None:
        lines.append(f"The program is padded with {NOP} symbols to {fmt.slots} slots; {NOP} slots do nothing.")
    lines.append("Routings:")
    lines += [f"  {r.symbol} ({r.name}): the step's input is {r.description}" for r in spec.routing_modules]
    lines.append("Skills:")
    lines += [f"  {s.symbol} ({s.name}): {s.description}" for s in spec.skill_modules]
    step = f"{STEP_SEP} S* x" if fmt.echo else f"{STEP_SEP} x"
    lines.append(
        f"Work through the program, then write the result of every step on the LAST line of your answer, and "
        f"nothing after it, as `{step}1 {step}2 {STEP_SEP} ... {step}L` (one entry per step, states as letters, no "
        f"'{HIDDEN}')" + (", each state preceded by its step's skill symbol" if fmt.echo else "") + ". "
        "The last state is the answer."
    )
    return "\n".join(lines)


def _task_json(spec: Spec, fmt: TaskFormat, prompt: str) -> str:
    return json.dumps({"spec": spec.to_dict(), "format": fmt.to_dict(), "prompt": prompt}, sort_keys=True)


def prompt_rows(
    spec: Spec, fmt: TaskFormat, splits: Mapping[str, Sequence[Program]], *, inputs: int = 1, seed: int = 0
) -> list[dict[str, Any]]:
    """One row per (program, random ``x_0``): the layout-neutral content of an export.

    Each split's ``x_0`` are drawn from ``derive_seed(seed, "export", split)``; rows hold
    ``text`` (instruction and problem), ``ground_truth`` (``x_L`` as letters), ``split``,
    ``program`` (:meth:`Program.names`), ``depth``, ``index`` (row number) and ``hlsm`` (the task
    JSON of :mod:`hlsm.app.rewards`).
    """
    if inputs < 1:
        raise ExportError(f"inputs per program must be at least 1, got {inputs}")
    head = instruction(spec, fmt)
    rows: list[dict[str, Any]] = []
    for split, programs in splits.items():
        if not programs:
            continue
        for p in programs:
            fmt.check(p)
        repeated = [p for p in programs for _ in range(inputs)]
        gen = torch.Generator().manual_seed(derive_seed(seed, "export", split))
        x0 = torch.randint(spec.alphabet, (len(repeated), spec.length), generator=gen)
        batch = ProgramBatch.from_programs(repeated)
        states = execute(spec, batch, x0)  # (N, L_max + 1, n)
        answers = states[torch.arange(len(repeated)), batch.depth]
        for p, x, answer in zip(repeated, x0.tolist(), answers.tolist(), strict=True):
            problem = render_prompt(spec, p, x, slots=fmt.slots)
            rows.append(
                {
                    "text": f"{head}\nProblem: `{problem}`",
                    "ground_truth": spec.render_state(answer),
                    "split": split,
                    "program": p.names(spec),
                    "depth": p.depth,
                    "index": len(rows),
                    "hlsm": _task_json(spec, fmt, problem),
                }
            )
    return rows


def layout(rows: Sequence[Mapping[str, Any]], trainer: str) -> list[dict[str, Any]]:
    """Rows of :func:`prompt_rows` in the column layout of ``trainer`` (module docstring)."""
    if trainer not in FORMATS:
        raise ExportError(f"unknown export format '{trainer}'; use one of {list(FORMATS)}")
    out = []
    for row in rows:
        messages = [{"role": "user", "content": row["text"]}]
        if trainer == "verl":
            extra = {k: row[k] for k in ("split", "program", "depth", "index", "hlsm")}
            out.append(
                {
                    "data_source": f"{DATA_SOURCE}/{row['split']}",  # verl's validation reports per data_source
                    "prompt": messages,
                    "ability": ABILITY,
                    "reward_model": {"style": "rule", "ground_truth": row["ground_truth"]},
                    "extra_info": extra,
                }
            )
        else:
            out.append({"prompt": messages, **{k: v for k, v in row.items() if k != "text"}})
    return out


def _write_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    """Write ``rows`` as parquet atomically (a failure leaves no partial file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows)
    atomic_write(path, lambda f: pq.write_table(table, f), mode="wb")


def export_design(
    spec: Spec,
    design: SupportDesign,
    out: str | Path,
    trainer: str,
    *,
    fmt: TaskFormat = PLAIN,
    inputs: int = 1,
    seed: int = 0,
) -> dict[str, Any]:
    """Write ``train.parquet``, ``test.parquet`` and ``export.json`` to ``out`` (module docstring).

    Returns the summary written to ``export.json``: row counts per split of each file.

    Raises
    ------
    ExportError
        An unknown ``trainer``, a design without RL programs, ``inputs < 1``.
    """
    if trainer not in FORMATS:
        raise ExportError(f"unknown export format '{trainer}'; use one of {list(FORMATS)}")
    rl = design.splits.get("rl", ())
    if not rl:
        raise ExportError(
            "the design has no RL programs to train on; list programs under [rl] or set n_rl > 0 in [design]"
        )
    train = prompt_rows(spec, fmt, {"rl": rl}, inputs=inputs, seed=derive_seed(seed, "train"))
    test = prompt_rows(spec, fmt, design_splits(design), inputs=inputs, seed=derive_seed(seed, "test"))
    summary = {
        "format": trainer,
        "spec": spec.to_dict(),
        # a drawn design by its config; a listed one (identify's schema) by its splits' programs
        "design": design.config.to_dict() if design.config is not None else {"splits": design.to_dict()["splits"]},
        "task_format": fmt.to_dict(),
        "inputs": inputs,
        "seed": seed,
        "train": dict(Counter(r["split"] for r in train)),
        "test": dict(Counter(r["split"] for r in test)),
    }
    folder = Path(out)
    with writing(folder, "export folder"):
        folder.mkdir(parents=True, exist_ok=True)
        _write_parquet(layout(train, trainer), folder / "train.parquet")
        _write_parquet(layout(test, trainer), folder / "test.parquet")
        write_text(folder / "export.json", json.dumps(summary, indent=2) + "\n")
    return summary


# ---------------------------------------------------------------------------------------------
# generations back


def _read_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        raise ExportError(f"generations file '{path}' does not exist; check the path")
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except (pa.ArrowException, OSError) as err:
            raise ExportError(f"'{path}' is not a readable parquet file: {err}") from None
    records = []
    for lineno, line in enumerate(read_text(path, "records file", max_bytes=None).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ExportError(f"'{path}' line {lineno}: not JSON ({err.msg}); write one object a line") from None
        if not isinstance(record, dict):
            raise ExportError(f"'{path}' line {lineno}: expected a JSON object, got {type(record).__name__}")
        records.append(record)
    return records


def _fields(record: Mapping[str, Any]) -> tuple[str, str, str | None]:
    """``(split, ground_truth, task)`` of a row in either layout."""
    if isinstance(record.get("extra_info"), Mapping):  # verl
        info, reward = record["extra_info"], record.get("reward_model") or {}
        return info["split"], reward["ground_truth"], info.get("hlsm")
    return record["split"], record["ground_truth"], record.get("hlsm")


def score_generations(path: str | Path, response: str = "response") -> dict[str, dict[str, float]]:
    """Exact-match accuracy of an LLM's generations per split, judged by :func:`hlsm.app.rewards.judge`.

    Parameters
    ----------
    path
        JSONL or parquet: the rows of an export (either layout) with one more column ``response``
        holding the generation (a string, a chat message list, or a list of either: several samples
        per prompt, each scored).
    response
        The name of that column.

    Returns
    -------
    dict
        Per split: ``n`` (generations), ``accuracy``, ``se`` (:func:`hlsm.stats.binomial_se`) and
        ``malformed`` (fraction that does not parse as a full trace of the prompt's program).
    """
    path = Path(path)
    outcomes: dict[str, list[str]] = {}
    for i, record in enumerate(_read_records(path)):
        try:
            split, truth, task = _fields(record)
            value = record[response]
        except (KeyError, TypeError) as err:
            raise ExportError(
                f"'{path}' row {i}: missing {err}; each row needs the export's columns plus '{response}'"
            ) from None
        samples = value if isinstance(value, list) and value and not isinstance(value[0], Mapping) else [value]
        for sample in samples:
            outcomes.setdefault(split, []).append(judge(completion_text(sample), truth, task))
    result = {}
    for split, verdicts in outcomes.items():
        n = len(verdicts)
        p = verdicts.count("correct") / n
        result[split] = {
            "n": n,
            "accuracy": p,
            "se": binomial_se(p, n),
            "malformed": verdicts.count("malformed") / n,
        }
    return result
