"""``hlsm probe``: which library skill does each symbol of a trained transformer execute, in which context?

A run samples the checkpoint's own traces (:func:`hlsm.lm.probe.sample_traces`: greedy and at
temperature 1, on the seen, unseen, deeper and atomic splits), turns every written step into a record
(:class:`hlsm.infer.context.StepRecords`: the step reads the model's own previous state), fits
context-dependent bindings (context = the previous skill symbol) and a context-free fit by EM,
measures them against each symbol's own skill (the task's by default, or its context-free majority
binding: ``reference``), and writes to the output folder:

- ``probe.json``: the entanglement index and unexplained share per context group (``first`` step,
  ``seen`` SFT pair, ``rl`` pair practised by RL only, ``never``-trained pair) with bootstrap standard
  errors over traces; per symbol and context the records, the top skill and its probability, the
  unexplained share; the substitutions (a symbol bound off its own skill in a context); traces
  drawn and how many were readable to the end;
- ``bindings.png``: per symbol (rows) and context (columns), the binding mass on the symbol's
  own skill, contexts coloured by group;
- ``probe.md``: the same as tables.

What it can and cannot see is in ``theory/identifiability.md`` (C3): a record on which two skills
agree cannot say which ran (counted in ``ambiguous``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from hlsm.design import SupportDesign
from hlsm.errors import HLSMError
from hlsm.infer.context import (
    ContextFit,
    StepRecords,
    bootstrap_context,
    entanglement,
    fit_context,
    unexplained_posterior,
)
from hlsm.infer.letters import LetterRecords, fit_letters, hamming_to, near_misses
from hlsm.io import json_safe, write_json, write_text
from hlsm.limits import check_memory, decoding_bytes
from hlsm.lm.policy import Policy
from hlsm.lm.probe import ProbeTraces, sample_traces
from hlsm.lock import writing
from hlsm.spec import Spec

GROUPS = ("first", "seen", "rl", "never")
"""Context groups of a step: step 1, an SFT pair, a pair practised by RL only, a never-trained pair."""

SUBSTITUTION_MASS = 0.5
"""A (symbol, context) counts as a substitution when at least this much binding mass is on another skill..."""

LETTER_STEPS = 5
"""Unexplained steps a (symbol, context) needs before its letters are read (``near_misses``)."""

EXPLAINED_STEPS = 3.0
"""... and at least this many of its steps are explained by a library module (else its row is the prior's)."""


class ProbeError(HLSMError):
    """A probe that cannot run; the message names the fix."""


def context_name(spec: Spec, context: int) -> str:
    return "start" if context == spec.num_skills else spec.skill_symbols[context]


def probe_records(traces: ProbeTraces, spec: Spec) -> tuple[StepRecords, list[str]]:
    """The step records of ``traces`` and each record's context group."""
    records = StepRecords.from_states(spec, traces.programs, traces.states)
    groups = [
        traces.pair_group(traces.programs[t], s)
        for t, s in zip(records.trace.tolist(), records.step.tolist(), strict=True)
    ]
    return records, groups


def analyse(
    spec: Spec,
    traces: ProbeTraces,
    *,
    replicates: int = 30,
    seed: int = 0,
    routing: torch.Tensor | None = None,
    reference: str = "true",
    strata: Callable[[StepRecords, list[str]], dict[str, list[str]]] | None = None,
) -> dict[str, Any]:
    """The probe's numbers for ``traces`` (the content of ``probe.json`` without the run's settings).

    ``reference`` (:data:`hlsm.infer.context.REFERENCES`): a symbol's own skill is the task's
    (``true``, the default for a checkpoint trained on the toolkit's data) or its context-free
    majority binding (``majority``). ``strata(records, groups)`` (of :func:`probe_records`) returns
    ``{name: one label per record}``; each adds ``strata[name][label]`` to the result: the records,
    entanglement and unexplained share of each label's records under the same fit (no bootstrap)."""
    records, groups = probe_records(traces, spec)
    if len(records) == 0:
        raise ProbeError("no readable step in any trace: the checkpoint writes no state the probe can read")
    fit = fit_context(spec, records, beta=routing)
    free = fit_context(spec, records, contexts=False, beta=routing)
    ent = entanglement(spec, fit, free, records, groups, reference=reference)
    errors = bootstrap_context(
        spec, records, groups, replicates=replicates, seed=seed, beta=routing, reference=reference
    )
    group_of: dict[tuple[int, int], str] = {}
    for s, c, g in zip(records.symbol.tolist(), records.context.tolist(), groups, strict=True):
        group_of[(s, c)] = g
    letters = _letters(spec, traces, records, groups, fit, ent.reference)
    by_stratum = {}
    for name, labels in (strata(records, groups) if strata else {}).items():
        cut = entanglement(spec, fit, free, records, labels, reference=reference)
        by_stratum[name] = {
            label: {
                "records": cut.records[label],
                "entanglement": cut.index[label],
                "unexplained": cut.unexplained[label],
            }
            for label in cut.records
        }
    return {
        "traces": len(traces),
        "readable_to_the_end": sum(traces.complete),
        "records": len(records),
        "ambiguous_records": fit.ambiguous,
        "reference": {spec.skill_symbols[s]: spec.skills[k] for s, k in enumerate(ent.reference)},
        "reference_kind": ent.reference_kind,
        "groups": {
            g: {
                "records": ent.records[g],
                "entanglement": ent.index[g],
                "entanglement_se": errors.groups.get(g, {}).get("index_se", math.nan),
                "ties": ent.ties[g],
                "unexplained": ent.unexplained[g],
                "unexplained_se": errors.groups.get(g, {}).get("unexplained_se", math.nan),
            }
            for g in GROUPS
            if g in ent.index
        },
        "bindings": _bindings(spec, fit, ent.reference, group_of, errors.cells),
        "per_symbol": {
            spec.skill_symbols[s]: {g: v for g, v in by_group.items()} for s, by_group in sorted(ent.per_symbol.items())
        },
        "letters": letters,
        "log_likelihood": fit.log_likelihood,
        "bootstrap_replicates": replicates,
    } | ({"strata": by_stratum} if strata else {})


def _letters(
    spec: Spec, traces: ProbeTraces, records: StepRecords, groups: list[str], fit: ContextFit, reference: list[int]
) -> dict[str, Any]:
    """One level down, on the steps no module explains: how far they are from the symbol's own skill, letter
    by letter, and which output positions read another source or map than that skill does."""
    letters = LetterRecords.from_states(spec, traces.programs, traces.states)
    unexplained = (unexplained_posterior(spec, fit, records) > 0.5).nonzero(as_tuple=True)[0]
    if len(unexplained) == 0:
        return {"steps": 0, "hamming": {}, "near_misses": []}
    chosen = letters.index(unexplained)
    own = torch.tensor(reference)[chosen.symbol]
    distance = hamming_to(spec, chosen, own)
    by_group: dict[str, list[int]] = {}
    for r, d in zip(unexplained.tolist(), distance.tolist(), strict=True):
        by_group.setdefault(groups[r], []).append(d)
    hamming = {
        g: {"steps": len(v), "within_1": sum(x <= 1 for x in v) / len(v), "within_2": sum(x <= 2 for x in v) / len(v)}
        for g, v in sorted(by_group.items())
    }
    letter_fit = fit_letters(spec, chosen)
    named = []
    for s, c in sorted({(int(a), int(b)) for a, b in zip(chosen.symbol, chosen.context, strict=True)}):
        if int(letter_fit.counts[s, c]) < LETTER_STEPS:
            continue
        for row in near_misses(spec, letter_fit, s, c, reference[s]):
            named.append(
                {
                    "symbol": spec.skill_symbols[s],
                    "context": context_name(spec, c),
                    "skill": spec.skills[reference[s]],
                    "steps": int(letter_fit.counts[s, c]),
                    **row,
                }
            )
    return {"steps": len(unexplained), "hamming": hamming, "near_misses": named}


def _bindings(
    spec: Spec,
    fit: ContextFit,
    reference: list[int],
    group_of: dict[tuple[int, int], str],
    errors: dict[tuple[int, int], dict[str, float]],
) -> list[dict[str, Any]]:
    rows = []
    for (s, c), group in sorted(group_of.items()):
        alpha = fit.alpha[s, c]
        top = int(alpha.argmax())
        explained = float(fit.counts[s, c]) * (1 - float(fit.epsilon[s, c]))
        informed = explained >= EXPLAINED_STEPS
        top_beats_own = float(alpha[top]) > float(alpha[reference[s]])
        rows.append(
            {
                "symbol": spec.skill_symbols[s],
                "context": context_name(spec, c),
                "group": group,
                "records": int(fit.counts[s, c]),
                "skill": spec.skills[top],
                "probability": float(alpha[top]),
                "own": float(alpha[reference[s]]) if informed else None,
                "own_se": errors.get((s, c), {}).get("own_se", math.nan),
                "unexplained_se": errors.get((s, c), {}).get("unexplained_se", math.nan),
                "explained_steps": explained,
                "unexplained": float(fit.epsilon[s, c]),
                "substitution": bool(informed and float(alpha[top]) >= SUBSTITUTION_MASS and top_beats_own),
            }
        )
    return rows


def run_probe(
    policy: Policy,
    out: str | Path | None = None,
    *,
    design: SupportDesign | None = None,
    examples: int = 256,
    seed: int = 0,
    replicates: int = 30,
    reference: str = "true",
) -> dict[str, Any]:
    """Probe a loaded checkpoint (module docstring); writes ``probe.json``, ``probe.md``, ``bindings.png``.

    ``reference``: a symbol's own skill, the task's (``true``) or its context-free majority binding
    (``majority``; :data:`hlsm.infer.context.REFERENCES`)."""
    if examples < 1 or replicates < 2:
        raise ProbeError(f"examples must be >= 1 and replicates >= 2, got {examples} and {replicates}")
    gpt = policy.model.config  # greedy and sampled traces of every split, decoded a split and mode at a time
    need = decoding_bytes(examples, gpt.max_len, gpt.n_layer, gpt.d_model)
    check_memory(f"the probe's --examples {examples:,} traces per split and mode", need, "use fewer --examples")
    traces = sample_traces(policy, design, examples=examples, seed=seed)
    spec = policy.spec
    # the task's routing symbols denote its routings (the transformer never chooses a routing)
    routing = torch.eye(spec.num_routings, dtype=torch.float64)
    result = {
        "checkpoint": {"kind": policy.kind, "step": policy.step},
        "examples_per_split_and_mode": examples,
        "seed": seed,
        "splits": sorted(set(traces.split)),
        **analyse(spec, traces, replicates=replicates, seed=seed, routing=routing, reference=reference),
    }
    if out is not None:
        out = Path(out)
        with writing(out, "probe folder"):
            out.mkdir(parents=True, exist_ok=True)
            write_json(out / "probe.json", json_safe(result))
            write_text(out / "probe.md", report(result))
            from hlsm.app.lmplots import plot_probe_bindings

            plot_probe_bindings(spec, result, out / "bindings.png")
    return result


_REFERENCE_TEXT = {
    "true": "the task's (symbol s executes skill s in the data the model was trained on)",
    "majority": "its binding in the context-free fit (its majority behaviour; the truth was not used)",
}


def report(result: dict[str, Any]) -> str:
    """Markdown tables of a probe's result."""
    from hlsm.app.report import markdown_table

    groups = result["groups"]
    lines = [
        f"# Probe of a {result['checkpoint']['kind']} checkpoint (step {result['checkpoint']['step']})\n",
        f"{result['traces']:,} traces ({result['readable_to_the_end']:,} readable to the end), "
        f"{result['records']:,} steps, {result['ambiguous_records']:,} explained by more than one module.\n",
        markdown_table(
            ("context", "steps", "entanglement", "ties", "unexplained"),
            [
                (
                    g,
                    v["records"],
                    f"{v['entanglement']:.3f} ± {v['entanglement_se']:.3f}",
                    f"{v['ties']:.3f}" if "ties" in v else "-",
                    f"{v['unexplained']:.3f} ± {v['unexplained_se']:.3f}",
                )
                for g, v in groups.items()
            ],
        ),
        f"\nOwn skill of a symbol: {_REFERENCE_TEXT[result.get('reference_kind', 'majority')]}. Entanglement: the",
        "share of the steps a library module explains that the symbol's own skill does not reproduce (a step on",
        "which another skill agrees with the own one, a tie, counts as the own skill; ties: the share of such",
        "steps); unexplained: the share of outputs no library module gives from the model's own previous state",
        "(± bootstrap SE over traces). A substitution: a (symbol, context) with at least 3 explained steps whose",
        "most probable skill (at least 0.5, above its own: ties are C3 masking) is another.\n",
    ]
    subs = sorted((b for b in result["bindings"] if b["substitution"]), key=lambda b: -b["records"])
    if subs:
        lines += [
            "Substitutions (a symbol bound to another skill in a context):\n",
            markdown_table(
                ("after", "symbol", "acts as", "probability", "unexplained", "steps", "context"),
                [
                    (
                        b["context"],
                        b["symbol"],
                        b["skill"],
                        f"{b['probability']:.2f}",
                        f"{b['unexplained']:.2f}",
                        b["records"],
                        b["group"],
                    )
                    for b in subs[:20]
                ],
            ),
        ]
    letters = result.get("letters", {})
    if letters.get("hamming"):
        lines += [
            "\nOne level down, the unexplained steps against the symbol's own skill on the model's own input"
            " (letters that differ):\n",
            markdown_table(
                ("context", "unexplained steps", "within 1 letter", "within 2 letters"),
                [
                    (g, v["steps"], f"{v['within_1']:.0%}", f"{v['within_2']:.0%}")
                    for g, v in letters["hamming"].items()
                ],
            ),
        ]
    if letters.get("near_misses"):
        lines += [
            "\nNear misses named letter by letter (per-letter selections of the unexplained steps, where they"
            " differ from the own skill's):\n",
            markdown_table(
                ("after", "symbol (skill)", "position", "reads", "probability", "the skill reads", "steps"),
                [
                    (
                        m["context"],
                        f"{m['symbol']} ({m['skill']})",
                        m["position"],
                        f"position {m['source']} ({m['map']})",
                        f"{m['probability']:.2f}",
                        f"position {m['expected_source']} ({m['expected_map']})",
                        m["steps"],
                    )
                    for m in sorted(letters["near_misses"], key=lambda m: -m["steps"])[:20]
                ],
            ),
        ]
    lines.append("\n![bindings](bindings.png)\n")
    return "\n".join(lines)
