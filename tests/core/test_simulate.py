"""The corpus sampler: determinism, clean execution, JSONL round trips and errors, and distribution.

Statistical checks carry their failure budget next to the assert. All seeds are fixed, so a run is
deterministic; the budget says how often a correct sampler would fail under a fresh seed.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from scipy import stats

from hlsm.programs import Program, ProgramError, execute
from hlsm.simulate import (
    Corpus,
    CorpusError,
    atomic_write,
    concat,
    read_jsonl,
    simulate,
    simulate_naive,
    summarize,
    write_jsonl,
)
from hlsm.spec import Spec
from hlsm.traces import TraceFormatError
from tests import reference

TINY = Spec.tiny()
SUPPORT_NAMES = [
    "sort",
    "chain:reverse > add_first:shift_up",
    "restart:count > skip:running_max > sub_skip:rotate_left",
    "zip:complement > reuse_first:difference > splice:sort_desc > min_skip:palindrome",
]


def support(spec: Spec) -> list[Program]:
    return [Program.from_names(spec, text) for text in SUPPORT_NAMES]


def assert_same_corpus(a: Corpus, b: Corpus) -> None:
    assert a.spec == b.spec
    assert torch.equal(a.programs.routing, b.programs.routing)
    assert torch.equal(a.programs.skill, b.programs.skill)
    assert torch.equal(a.programs.depth, b.programs.depth)
    assert torch.equal(a.states, b.states)
    assert torch.equal(a.mask, b.mask)
    assert a.split == b.split


def reference_step(spec: Spec, history: list[list[int]], routing: int, skill: int) -> list[int]:
    u = list(history[0]) if routing < 0 else reference.ROUTINGS[spec.routings[routing]](history, spec.alphabet)
    return reference.SKILLS[spec.skills[skill]](u, spec.alphabet)


# ---------------------------------------------------------------------------------------------
# determinism and clean execution


def test_same_seed_same_corpus_and_different_seed_different_corpus() -> None:
    programs = support(TINY)
    first = simulate(TINY, programs, 300, seed=4, epsilon=0.2, exposure="answer", split=["a", "b", "c", "d"])
    again = simulate(TINY, programs, 300, seed=4, epsilon=0.2, exposure="answer", split=["a", "b", "c", "d"])
    assert_same_corpus(first, again)
    other = simulate(TINY, programs, 300, seed=5, epsilon=0.2, exposure="answer", split=["a", "b", "c", "d"])
    assert not torch.equal(first.states, other.states)


@pytest.mark.parametrize("spec", [TINY, Spec()], ids=["A3n3", "A8n6"])
def test_clean_traces_are_the_programs_executions(spec: Spec) -> None:
    programs = support(spec)
    corpus = simulate(spec, programs, 400, seed=1)
    assert len(corpus) == 400 and corpus.states.shape == (400, 5, spec.length)
    assert torch.equal(corpus.states, execute(spec, corpus.programs, corpus.states[:, 0]))
    assert set(corpus.programs.programs()) == set(programs)
    for i in range(len(corpus)):
        program = corpus.program(i)
        expected = reference.run_program(
            spec.skills, spec.routings, program.steps, corpus.states[i, 0].tolist(), spec.alphabet
        )
        assert corpus.states[i, : program.depth + 1].tolist() == expected
        assert corpus.mask[i].tolist() == [True] * program.depth + [False] * (4 - program.depth)


def test_exposure_mask_and_split_labels() -> None:
    programs = support(TINY)
    corpus = simulate(TINY, programs, 200, seed=2, exposure="steps:1,3", split=["w", "x", "y", "z"])
    labels = dict(zip(programs, "wxyz", strict=True))
    for i in range(len(corpus)):
        program = corpus.program(i)
        assert corpus.split[i] == labels[program]
        expected = [step in (1, 3) for step in range(1, program.depth + 1)]
        assert corpus.mask[i].tolist() == expected + [False] * (4 - program.depth)
        hidden = corpus.text(i).count("?")
        assert hidden == expected.count(False)
    assert set(simulate(TINY, programs, 20, seed=2).split) == {"sft"}


def test_weights_and_argument_errors() -> None:
    programs = support(TINY)
    corpus = simulate(TINY, programs, 200, seed=3, weights=[0, 1, 0, 1])
    assert set(corpus.programs.depth.tolist()) == {2, 4}
    empty = simulate(TINY, programs, 0, seed=0)
    assert len(empty) == 0 and empty.states.shape[0] == 0
    with pytest.raises(ProgramError, match="support is empty"):
        simulate(TINY, [], 10, seed=0)
    with pytest.raises(ProgramError, match="weights must be non-negative"):
        simulate(TINY, programs, 10, seed=0, weights=[1, -1, 1, 1])
    with pytest.raises(ProgramError, match="weights must be non-negative"):
        simulate(TINY, programs, 10, seed=0, weights=[1, 1])
    with pytest.raises(ProgramError, match="skill index 30 out of range"):
        simulate(TINY, [Program(((0, 30),))], 10, seed=0)
    with pytest.raises(CorpusError, match=r"epsilon must be in \[0, 1\]"):
        simulate(TINY, programs, 10, seed=0, epsilon=1.5)
    with pytest.raises(CorpusError, match="non-negative"):
        simulate(TINY, programs, -1, seed=0)
    with pytest.raises(CorpusError, match="one split label"):
        simulate(TINY, programs, 10, seed=0, split=["a", "b"])
    with pytest.raises(TraceFormatError, match="unknown exposure"):
        simulate(TINY, programs, 10, seed=0, exposure="most")


def test_summarize_and_concat() -> None:
    programs = support(TINY)
    a = simulate(TINY, programs[:2], 50, seed=0, split="a")
    b = simulate(TINY, programs[2:], 30, seed=1, split="b", exposure="answer")
    joined = concat([a, b])
    assert len(joined) == 80 and joined.programs.max_depth == 4
    assert joined.programs.programs() == a.programs.programs() + b.programs.programs()
    assert [joined.text(i) for i in range(80)] == [a.text(i) for i in range(50)] + [b.text(i) for i in range(30)]
    assert torch.equal(joined.states[:50, -1], a.states[:, -1])
    summary = summarize(joined)
    uses = Counter(TINY.skills[k] for p in joined.programs.programs() for k in p.skills)
    assert summary["skills"] == {name: uses.get(name, 0) for name in TINY.skills}
    assert summary["traces"] == 80 and summary["split"] == {"a": 50, "b": 30}
    assert sum(summary["depth"].values()) == 80
    shown = int(a.programs.depth.sum()) + 30
    assert summary["exposed_fraction"] == pytest.approx(shown / int(joined.programs.depth.sum()))


# ---------------------------------------------------------------------------------------------
# JSONL


@pytest.mark.parametrize("exposure", ["full", "answer", "steps:2"])
def test_jsonl_round_trip(tmp_path: Path, exposure: str) -> None:
    corpus = simulate(TINY, support(TINY), 200, seed=7, exposure=exposure, epsilon=0.1, split=["p", "q", "r", "s"])
    assert int(corpus.programs.depth.max()) == 4
    path = tmp_path / "corpus.jsonl"
    write_jsonl(corpus, path)
    assert_same_corpus(read_jsonl(TINY, path), corpus)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.jsonl"]
    first = json.loads(path.read_text().splitlines()[0])
    assert first["text"] == corpus.text(0) and first["program"] == corpus.program(0).names(TINY)


@pytest.fixture
def corpus_file(tmp_path: Path) -> Iterator[tuple[Path, list[dict[str, Any]]]]:
    path = tmp_path / "good.jsonl"
    write_jsonl(simulate(TINY, support(TINY), 6, seed=11, exposure="steps:1"), path)
    yield path, [json.loads(line) for line in path.read_text().splitlines()]


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def corrupted(record: dict[str, Any], **changes: Any) -> str:
    return json.dumps({**record, **changes})


def test_read_jsonl_rejects_a_truncated_line(corpus_file: tuple[Path, list[dict[str, Any]]]) -> None:
    path, records = corpus_file
    lines = [json.dumps(r) for r in records]
    lines[2] = lines[2][: len(lines[2]) // 2]
    write_lines(path, lines)
    with pytest.raises(CorpusError, match=re.escape(f"{path}, line 3: not valid JSON")):
        read_jsonl(TINY, path)


def test_read_jsonl_rejects_a_missing_key(corpus_file: tuple[Path, list[dict[str, Any]]]) -> None:
    path, records = corpus_file
    lines = [json.dumps(r) for r in records]
    lines[3] = json.dumps({k: v for k, v in records[3].items() if k != "states"})
    write_lines(path, lines)
    with pytest.raises(CorpusError, match=re.escape(f"{path}, line 4: record lacks key(s) ['states']")):
        read_jsonl(TINY, path)
    write_lines(path, ["[1, 2]"])
    with pytest.raises(CorpusError, match=re.escape(f"{path}, line 1: record lacks key(s)")):
        read_jsonl(TINY, path)


def test_read_jsonl_rejects_a_text_that_does_not_parse(corpus_file: tuple[Path, list[dict[str, Any]]]) -> None:
    path, records = corpus_file
    lines = [json.dumps(r) for r in records]
    lines[1] = corrupted(records[1], text="abz" + records[1]["text"][3:])
    write_lines(path, lines)
    with pytest.raises(CorpusError, match=re.escape(f"{path}: line 2, column 1: ") + ".*outside the alphabet"):
        read_jsonl(TINY, path)
    lines[1] = corrupted(records[1], text=7)
    write_lines(path, lines)
    with pytest.raises(CorpusError, match=re.escape(f"{path}, line 2: 'text' must be a string")):
        read_jsonl(TINY, path)


@pytest.mark.parametrize("field", ["depth", "routing", "skill", "states", "mask", "first_state", "bad_state"])
def test_read_jsonl_rejects_metadata_that_disagrees_with_the_text(
    corpus_file: tuple[Path, list[dict[str, Any]]], field: str
) -> None:
    path, records = corpus_file
    record = records[4]
    depth = record["depth"]
    changes: dict[str, Any] = {
        "depth": {"depth": depth + 1},
        "routing": {"routing": [(m + 1) % 10 for m in record["routing"]]},
        "skill": {"skill": [(k + 1) % 24 for k in record["skill"]]},
        "states": {"states": record["states"][:-1]},
        "mask": {"mask": [not m for m in record["mask"]]},
        "first_state": {"states": ["ccc" if record["states"][0] != "ccc" else "aaa"] + record["states"][1:]},
        "bad_state": {"states": record["states"][:-1] + ["zzz"]},
    }[field]
    lines = [json.dumps(r) for r in records]
    lines[4] = corrupted(record, **changes)
    write_lines(path, lines)
    with pytest.raises(CorpusError, match=re.escape(f"{path}, line 5: the metadata") + ".*disagrees with the text"):
        read_jsonl(TINY, path)


def test_read_jsonl_rejects_a_shown_state_that_disagrees(corpus_file: tuple[Path, list[dict[str, Any]]]) -> None:
    path, records = corpus_file
    record = records[0]  # exposure steps:1 shows x_1
    shown = record["states"][1]
    other = "aaa" if shown != "aaa" else "bbb"
    lines = [json.dumps(r) for r in records]
    lines[0] = corrupted(record, states=[record["states"][0], other, *record["states"][2:]])
    write_lines(path, lines)
    with pytest.raises(CorpusError, match=re.escape(f"{path}, line 1: the metadata")):
        read_jsonl(TINY, path)


def test_read_jsonl_rejects_empty_and_missing_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(CorpusError, match="holds no traces"):
        read_jsonl(TINY, empty)
    with pytest.raises(CorpusError, match=r"corpus .*missing.jsonl. does not exist; check the path"):
        read_jsonl(TINY, tmp_path / "missing.jsonl")


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = simulate(TINY, support(TINY), 10, seed=0)
    original_records = Corpus.records

    def broken_records(self: Corpus) -> Iterator[dict[str, Any]]:
        records = original_records(self)
        yield next(records)
        raise RuntimeError("disk full")

    monkeypatch.setattr(Corpus, "records", broken_records)
    fresh = tmp_path / "out" / "fresh.jsonl"
    with pytest.raises(RuntimeError, match="disk full"):
        write_jsonl(corpus, fresh)
    assert not fresh.exists() and list(fresh.parent.iterdir()) == []

    existing = tmp_path / "existing.jsonl"
    existing.write_text("previous content\n")
    with pytest.raises(RuntimeError, match="disk full"):
        write_jsonl(corpus, existing)
    assert existing.read_text() == "previous content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.jsonl", "out"]

    def fail_after_writing(f: Any) -> None:
        f.write("partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "interrupted.txt", fail_after_writing)
    assert not (tmp_path / "interrupted.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.jsonl", "out"]


# ---------------------------------------------------------------------------------------------
# the vectorised sampler against the sequential one and the exact distribution

SMALL = Spec(alphabet=3, length=2)
"""|X| = 9: every (program, answer) cell has probability >= eps / 9 / 6 > 0.5%."""

DISTRIBUTION_SUPPORT = [
    "sort",
    "chain:reverse > add_first:shift_up",
    "restart:count > skip:running_max > zip:rotate_left",
]
WEIGHTS = [1.0, 2.0, 3.0]
EPSILON = 0.3
DRAWS = 3000


def exact_answer_distribution(spec: Spec, program: Program, epsilon: float) -> list[float]:
    """P(x_L = code) by propagating every history: the corrupted table is (1 - eps) delta + eps / |X|."""
    size = spec.num_states
    states = [spec.decode(torch.tensor(c)).tolist() for c in range(size)]
    histories: dict[tuple[int, ...], float] = {(c,): 1.0 / size for c in range(size)}
    for m, k in program.steps:
        grown: dict[tuple[int, ...], float] = {}
        for history, p in histories.items():
            clean = reference_step(spec, [states[c] for c in history], m, k)
            clean_code = int(spec.encode(torch.tensor(clean)))
            for code in range(size):
                q = epsilon / size + (1.0 - epsilon) * (code == clean_code)
                grown[(*history, code)] = grown.get((*history, code), 0.0) + p * q
        histories = grown
    answer = [0.0] * size
    for history, p in histories.items():
        answer[history[-1]] += p
    return answer


@pytest.fixture(scope="module")
def two_samples() -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(program index, answer code) per draw from the vectorised and from the naive sampler."""
    programs = [Program.from_names(SMALL, t) for t in DISTRIBUTION_SUPPORT]
    index = {p: i for i, p in enumerate(programs)}
    fast = simulate(SMALL, programs, DRAWS, seed=21, weights=WEIGHTS, epsilon=EPSILON)
    fast_pairs = [
        (index[fast.program(i)], int(code)) for i, code in enumerate(SMALL.encode(fast.states[:, -1]).tolist())
    ]
    naive = simulate_naive(SMALL, programs, DRAWS, seed=22, weights=WEIGHTS, epsilon=EPSILON)
    naive_pairs = [(index[p], int(SMALL.encode(torch.tensor(states[-1])))) for p, states, _ in naive]
    return fast_pairs, naive_pairs


def contingency(rows: list[Counter[Any]]) -> list[list[int]]:
    keys = sorted(set().union(*rows))
    return [[row.get(key, 0) for key in keys] for row in rows]


def test_samplers_agree_on_the_program_choice(two_samples: tuple[list[tuple[int, int]], list[tuple[int, int]]]) -> None:
    fast, naive = two_samples
    table = contingency([Counter(p for p, _ in fast), Counter(p for p, _ in naive)])
    p_value = stats.chi2_contingency(table).pvalue
    assert p_value > 1e-3  # p > 1e-3: false-alarm rate 0.1% per run for a correct sampler
    # and each matches the weights 1:2:3 exactly
    for sample in (fast, naive):
        observed = [Counter(p for p, _ in sample)[i] for i in range(3)]
        expected = [DRAWS * w / sum(WEIGHTS) for w in WEIGHTS]
        assert stats.chisquare(observed, expected).pvalue > 1e-3  # false-alarm rate 0.1% per run


def test_samplers_agree_on_program_and_answer(two_samples: tuple[list[tuple[int, int]], list[tuple[int, int]]]) -> None:
    fast, naive = two_samples
    table = contingency([Counter(fast), Counter(naive)])
    assert min(min(row) for row in table) >= 5, "cells too sparse for the chi-square approximation"
    p_value = stats.chi2_contingency(table).pvalue
    assert p_value > 1e-3  # p > 1e-3: false-alarm rate 0.1% per run for a correct sampler


def test_vectorised_answers_match_the_exact_distribution(
    two_samples: tuple[list[tuple[int, int]], list[tuple[int, int]]],
) -> None:
    fast, _ = two_samples
    programs = [Program.from_names(SMALL, t) for t in DISTRIBUTION_SUPPORT]
    for i, program in enumerate(programs):
        answers = Counter(code for p, code in fast if p == i)
        draws = sum(answers.values())
        exact = exact_answer_distribution(SMALL, program, EPSILON)
        assert sum(exact) == pytest.approx(1.0)
        observed = [answers.get(code, 0) for code in range(SMALL.num_states)]
        expected = [draws * q for q in exact]
        # 3 programs at p > 1e-3 each: false-alarm rate about 0.3% per run
        assert stats.chisquare(observed, expected).pvalue > 1e-3, program.names(SMALL)


def test_x0_is_uniform_on_x() -> None:
    corpus = simulate(SMALL, [Program.atomic(0)], 2700, seed=8)
    observed = torch.bincount(SMALL.encode(corpus.states[:, 0]), minlength=SMALL.num_states).tolist()
    assert stats.chisquare(observed).pvalue > 1e-3  # false-alarm rate 0.1% per run


# ---------------------------------------------------------------------------------------------
# corruption rate


def changed_step_fraction(corpus: Corpus) -> tuple[int, int]:
    """(steps whose output differs from the clean step on the sampled history, steps)."""
    spec = corpus.spec
    changed = steps = 0
    states = corpus.states.tolist()
    for i in range(len(corpus)):
        program = corpus.program(i)
        for l, (m, k) in enumerate(program.steps, start=1):
            clean = reference_step(spec, states[i][:l], m, k)
            changed += clean != states[i][l]
            steps += 1
        # slots past the depth are never corrupted: they repeat the answer
        assert all(s == states[i][program.depth] for s in states[i][program.depth + 1 :])
    return changed, steps


@pytest.mark.parametrize("spec", [TINY, Spec(alphabet=2, length=2)], ids=["X27", "X4"])
@pytest.mark.parametrize("epsilon", [0.0, 0.3, 1.0])
def test_corruption_rate(spec: Spec, epsilon: float) -> None:
    corpus = simulate(spec, support(spec), 2000, seed=13, epsilon=epsilon)
    changed, steps = changed_step_fraction(corpus)
    # a corrupted step is a uniform draw on X, which equals the clean output with probability 1/|X|
    rate = epsilon * (1 - 1 / spec.num_states)
    if rate == 0.0:
        assert changed == 0
        return
    standard_error = math.sqrt(rate * (1 - rate) / steps)
    # within 4 binomial standard errors: two-sided false-alarm rate about 6e-5 per run (normal approximation)
    assert abs(changed / steps - rate) < 4 * standard_error, (changed / steps, rate)
