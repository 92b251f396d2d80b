"""The transformer's task format: encoding, loss masks, parsing generations back, data sources."""

from __future__ import annotations

import math
import random
import re

import pytest
import torch

from hlsm.design import DesignConfig, make_design
from hlsm.lm.data import FormatError, TaskFormat, encode_example, encode_prompt, make_tokenizer, parse_generation
from hlsm.lm.dataset import DataError, Source, SourceConfig, max_sequence_length, resolve_source, sample_examples
from hlsm.programs import Program, execute_one
from hlsm.spec import Spec
from hlsm.traces import NOP, TraceFormatError, render

SPEC = Spec(alphabet=5, length=4, skills=("reverse", "shift_up", "sort", "rotate_left"), routings=("chain", "restart"))
TOK = make_tokenizer(SPEC)
FORMATS = [TaskFormat(), TaskFormat(slots=None), TaskFormat(echo=True), TaskFormat(slots=None, echo=True)]
FORMAT_IDS = ["slots4", "plain", "slots4-echo", "plain-echo"]


def random_program(rng: random.Random, max_depth: int = 4) -> Program:
    if rng.random() < 0.25:
        return Program.atomic(rng.randrange(SPEC.num_skills))
    depth = rng.randint(1, max_depth)
    return Program(tuple((rng.randrange(SPEC.num_routings), rng.randrange(SPEC.num_skills)) for _ in range(depth)))


def example(rng: random.Random) -> tuple[Program, list[int], list[list[int]]]:
    program = random_program(rng)
    x0 = [rng.randrange(SPEC.alphabet) for _ in range(SPEC.length)]
    return program, x0, execute_one(SPEC, program, x0)[1:]


def test_task_format_validation() -> None:
    assert TaskFormat().slots == 4 and not TaskFormat().echo
    for bad in (0, -1, 2.5, True):
        with pytest.raises(FormatError, match="slots"):
            TaskFormat(slots=bad)  # type: ignore[arg-type]
    with pytest.raises(FormatError, match="echo"):
        TaskFormat(echo=1)  # type: ignore[arg-type]
    deep = Program(((0, 0),) * 5)
    with pytest.raises(FormatError, match="depth-5 program does not fit TaskFormat\\(slots=4\\); raise slots"):
        encode_prompt(SPEC, TaskFormat(), TOK, deep, [0] * 4)
    assert len(encode_prompt(SPEC, TaskFormat(slots=None), TOK, deep, [0] * 4)) == 2 + 4 + 10


@pytest.mark.parametrize("fmt", FORMATS, ids=FORMAT_IDS)
def test_loss_mask_covers_exactly_the_trace_tokens(fmt: TaskFormat) -> None:
    rng = random.Random(0)
    step_sep, nop = TOK.index[">"], TOK.index[NOP]
    for _ in range(200):
        program, x0, states = example(rng)
        ids, mask = encode_example(SPEC, fmt, TOK, program, x0, states)
        prompt = encode_prompt(SPEC, fmt, TOK, program, x0)
        P = len(prompt)
        assert len(mask) == len(ids)
        assert ids[:P] == prompt and P == fmt.prompt_length(SPEC, program)
        assert mask == [False] * P + [True] * (len(ids) - P)
        # the masked part is `> [S] x_1 ... > [S] x_L <eos>`: L steps of 1 + echo + n tokens, then EOS
        assert sum(mask) == fmt.trace_length(SPEC, program.depth) == program.depth * (1 + fmt.echo + 4) + 1
        assert ids[P] == step_sep and ids[-1] == TOK.eos and ids.count(TOK.eos) == 1
        assert TOK.decode(ids) == render(SPEC, program, x0, states, slots=fmt.slots, echo=fmt.echo)
        assert (nop in ids) == (fmt.slots is not None and (program.depth < 4 or program.is_atomic))


def test_fixed_width_prompts_have_equal_length() -> None:
    rng = random.Random(1)
    fmt = TaskFormat(slots=4)
    lengths = {len(encode_prompt(SPEC, fmt, TOK, random_program(rng), [0, 1, 2, 3])) for _ in range(300)}
    assert lengths == {2 + SPEC.length + 8}
    plain = {len(encode_prompt(SPEC, TaskFormat(slots=None), TOK, random_program(rng), [0] * 4)) for _ in range(300)}
    assert len(plain) > 3  # the plain format varies with the depth
    atomic = encode_prompt(SPEC, fmt, TOK, Program.atomic(2), [0, 1, 2, 3])
    assert TOK.decode(atomic) == f"abcd | NOP {SPEC.skill_symbols[2]} NOP NOP NOP NOP NOP NOP"


@pytest.mark.parametrize("fmt", FORMATS, ids=FORMAT_IDS)
def test_parse_generation_round_trips_golden_traces(fmt: TaskFormat) -> None:
    rng = random.Random(2)
    for _ in range(200):
        program, x0, states = example(rng)
        ids, mask = encode_example(SPEC, fmt, TOK, program, x0, states)
        P = mask.index(True)
        padded = ids[P:] + [TOK.pad] * rng.randrange(3)  # anything after EOS is ignored
        parsed = parse_generation(SPEC, fmt, TOK, ids[:P], torch.tensor(padded))
        assert parsed is not None
        assert parsed.program == program and list(parsed.x0) == x0
        assert [list(s) for s in parsed.states] == states and list(parsed.answer) == states[-1]


def _generation(fmt: TaskFormat, text: str) -> list[int]:
    return TOK.encode(text, bos=False, eos=False)


R0, S0, S1 = SPEC.routing_symbols[0], SPEC.skill_symbols[0], SPEC.skill_symbols[1]
MALFORMED = [
    # (case, format, generated text, end with EOS, message fragment)
    ("no eos", TaskFormat(), "> dcba > edcb", False, "no <eos>"),
    ("too few steps", TaskFormat(), "> dcba", True, "2 step(s) but the trace shows 1"),
    ("too many steps", TaskFormat(), "> dcba > edcb > edcb", True, "2 step(s) but the trace shows 3"),
    ("short state", TaskFormat(), "> dcb > edcb", True, "has length 3"),
    ("hidden state", TaskFormat(), "> ? > edcb", True, "shows '?'"),
    ("empty", TaskFormat(), "", True, "must start with '>'"),
    ("extends the program", TaskFormat(slots=None), f"{R0} {S1} > dcba > edcb > aaaa", True, "must start with '>'"),
    ("missing echo", TaskFormat(echo=True), f"> dcba > {S1} edcb", True, f"must echo its skill symbol '{S0}'"),
    ("wrong echo", TaskFormat(echo=True), f"> {S1} dcba > {S1} edcb", True, f"'{S0}' before its state, found '{S1}'"),
    ("echo in plain", TaskFormat(), f"> {S0} dcba > edcb", True, "state 'S0' has length 2"),
]


@pytest.mark.parametrize("case, fmt, text, eos, fragment", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_parse_generation_flags_malformed_generations(
    case: str, fmt: TaskFormat, text: str, eos: bool, fragment: str
) -> None:
    program = Program(((0, 0), (0, 1)))
    prompt = encode_prompt(SPEC, fmt, TOK, program, [0, 1, 2, 3])
    generated = _generation(fmt, text) + ([TOK.eos] if eos else [])
    assert parse_generation(SPEC, fmt, TOK, prompt, generated) is None
    with pytest.raises(TraceFormatError, match=re.escape(fragment)):
        parse_generation(SPEC, fmt, TOK, prompt, generated, strict=True)
    good = "> dcba > edcb" if not fmt.echo else f"> {S0} dcba > {S1} edcb"
    assert parse_generation(SPEC, fmt, TOK, prompt, _generation(fmt, good) + [TOK.eos]) is not None


def test_parse_generation_rejects_special_tokens_inside_the_trace() -> None:
    fmt = TaskFormat()
    prompt = encode_prompt(SPEC, fmt, TOK, Program.atomic(0), [0, 1, 2, 3])
    for special in (TOK.pad, TOK.bos):
        generated = _generation(fmt, "> dc") + [special] + _generation(fmt, "ba") + [TOK.eos]
        assert parse_generation(SPEC, fmt, TOK, prompt, generated) is None
    assert parse_generation(SPEC, fmt, TOK, prompt, _generation(fmt, "> dcba") + [TOK.eos]) is not None
    with pytest.raises(TraceFormatError, match="must start with <bos>"):
        parse_generation(SPEC, fmt, TOK, prompt[1:], [TOK.eos], strict=True)


# ---------------------------------------------------------------------------------------------
# data sources and batches

PAIR_SPEC = Spec(alphabet=4, length=3, skills=("reverse", "shift_up", "sort", "rotate_left", "complement"))
PAIR_DESIGN = make_design(
    PAIR_SPEC,
    DesignConfig(train_depth=3, deeper_depths=(4,), holdout="pairs", successors=2, routings=("chain", "restart"),
                 n_sft=20, n_rl=10, n_unseen=10, n_deeper=10),
)  # fmt: skip


def test_resolve_sources() -> None:
    atomic = resolve_source(PAIR_DESIGN, SourceConfig("a", programs="atomic"))
    assert atomic.programs == tuple(Program.atomic(k) for k in range(5))
    sft3 = resolve_source(PAIR_DESIGN, SourceConfig("s", split="sft", depth=3))
    assert len(sft3.programs) == 20 and all(p.depth == 3 for p in sft3.programs)
    sft1 = resolve_source(PAIR_DESIGN, SourceConfig("s1", split="sft", depth=1))
    assert sft1.programs == atomic.programs
    seen = PAIR_DESIGN.seen_pairs
    assert seen is not None
    pairs2 = resolve_source(PAIR_DESIGN, SourceConfig("p", programs="seen_pairs", depth=2, weight=0.3))
    assert len(pairs2.programs) == 5 * 2 * 2**2 and pairs2.weight == 0.3  # skills x successors x routings^2
    assert all(set(p.pairs()) <= seen for p in pairs2.programs)
    four = SourceConfig("p4", programs="seen_pairs", depth=4, limit=7)
    pairs4 = resolve_source(PAIR_DESIGN, four)
    assert len(pairs4.programs) == 7 and all(set(p.pairs()) <= seen and p.depth == 4 for p in pairs4.programs)
    assert resolve_source(PAIR_DESIGN, four) == pairs4  # deterministic
    every = resolve_source(PAIR_DESIGN, SourceConfig("all", programs="all", depth=2))
    assert len(every.programs) == (2 * 5) ** 2


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"programs": "some"}, "programs must be one of"),
        ({"split": "test"}, "split must be one of"),
        ({"programs": "seen_pairs"}, "needs depth >= 2"),
        ({"limit": 0}, "limit must be at least 1"),
        ({"weight": -1.0}, "weight must be non-negative"),
        ({"depth": 0}, "depth must be at least 1"),
    ],
)
def test_source_config_errors(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(DataError, match=fragment):
        SourceConfig("x", **kwargs)  # type: ignore[arg-type]


def test_resolve_source_errors() -> None:
    with pytest.raises(DataError, match="limit 99 exceeds its 5 programs"):
        resolve_source(PAIR_DESIGN, SourceConfig("a", programs="atomic", limit=99))
    with pytest.raises(DataError, match="has no programs"):
        resolve_source(PAIR_DESIGN, SourceConfig("r", split="rl", depth=2))
    plain_design = make_design(PAIR_SPEC, DesignConfig(n_sft=5, n_rl=5, n_unseen=5, n_deeper=5))
    with pytest.raises(DataError, match="holdout = 'pairs'"):
        resolve_source(plain_design, SourceConfig("p", programs="seen_pairs", depth=2))


def test_sample_examples_is_deterministic_and_mixes_by_weight() -> None:
    fmt = TaskFormat()
    tok = make_tokenizer(PAIR_SPEC)
    sources = [
        resolve_source(PAIR_DESIGN, SourceConfig("atomic", programs="atomic", weight=0.2)),
        resolve_source(PAIR_DESIGN, SourceConfig("d3", split="sft", depth=3, weight=0.8)),
    ]
    n = 2000
    a = sample_examples(PAIR_SPEC, fmt, tok, sources, n, seed=5)
    b = sample_examples(PAIR_SPEC, fmt, tok, sources, n, seed=5)
    assert torch.equal(a.ids, b.ids) and a.programs == b.programs
    assert not torch.equal(a.ids, sample_examples(PAIR_SPEC, fmt, tok, sources, n, seed=6).ids)
    share = float((a.source == 0).float().mean())
    assert abs(share - 0.2) < 5 * math.sqrt(0.2 * 0.8 / n)  # 5 standard errors
    assert all(p.is_atomic == (s == 0) for p, s in zip(a.programs, a.source.tolist(), strict=True))
    atomic = [p.skills[0] for p in a.programs if p.is_atomic]  # uniform over the source's 5 programs
    counts = torch.bincount(torch.tensor(atomic), minlength=5).double() / len(atomic)
    assert (counts - 0.2).abs().max() < 5 * math.sqrt(0.2 * 0.8 / len(atomic))
    # every row: the true execution, the loss mask on its trace, padding after it
    for i in range(0, n, 97):
        program, states = a.programs[i], a.states[i, : a.programs[i].depth + 1].tolist()
        assert execute_one(PAIR_SPEC, program, states[0]) == states
        ids, mask = encode_example(PAIR_SPEC, fmt, tok, program, states[0], states[1:])
        L = int(a.length[i])
        assert a.ids[i, :L].tolist() == ids and a.loss_mask[i, :L].tolist() == mask
        assert not a.loss_mask[i, L:].any() and (a.ids[i, L:] == tok.pad).all()
        assert a.answers[i].tolist() == states[-1] and int(a.prompt_len[i]) == 2 + 3 + 8
    width = max_sequence_length(PAIR_SPEC, fmt, sources)
    assert (
        width == 13 + 3 * 4 + 1 and sample_examples(PAIR_SPEC, fmt, tok, sources, 4, 0, width=width).ids.shape[1] == 26
    )
    with pytest.raises(DataError, match="shorter than the longest"):
        sample_examples(PAIR_SPEC, fmt, tok, sources, 50, 0, width=10)
    with pytest.raises(DataError, match="weights are all zero"):
        sample_examples(PAIR_SPEC, fmt, tok, [Source("z", sources[0].programs, 0.0)], 4, 0)
    sub = a.index([3, 1])
    assert torch.equal(sub.ids, a.ids[[3, 1]]) and sub.programs == (a.programs[3], a.programs[1])


def test_atomic_source_skips_held_out_skills() -> None:
    from hlsm.design import DesignConfig, make_design
    from hlsm.lm.dataset import SourceConfig, resolve_source
    from hlsm.spec import Spec

    spec = Spec(alphabet=3, length=3, skills=("reverse", "shift_up", "sort"), routings=("chain",))
    config = DesignConfig(train_depth=2, deeper_depths=(3,), n_sft=2, n_rl=2, n_unseen=2, n_deeper=2)
    design = make_design(spec, DesignConfig(**{**config.to_dict(), "held_out_skills": ("sort",)}))
    source = resolve_source(design, SourceConfig("atomic", programs="atomic"))
    assert [spec.skills[p.skills[0]] for p in source.programs] == ["reverse", "shift_up"]


def test_letters_reward_is_the_fraction_of_right_letters_and_exact_is_all_or_nothing() -> None:
    from hlsm.lm.rollout import score

    fmt = TaskFormat()
    program, x0 = Program(((0, 0), (0, 1))), [0, 1, 2, 3]
    states = execute_one(SPEC, program, x0)[1:]
    rows, wanted = [], []
    for wrong in range(SPEC.length + 1):  # the answer with its first `wrong` letters changed
        answer = [(a + 1) % SPEC.alphabet if i < wrong else a for i, a in enumerate(states[-1])]
        ids, mask = encode_example(SPEC, fmt, TOK, program, x0, [*states[:-1], answer])
        rows.append(ids[mask.index(True) :])
        wanted.append((SPEC.length - wrong) / SPEC.length)
    rows.append(rows[0][:-1] + [TOK.pad])  # no EOS: malformed
    wanted.append(0.0)
    width = max(map(len, rows))
    generated = torch.tensor([r + [TOK.pad] * (width - len(r)) for r in rows])
    prompt = encode_prompt(SPEC, fmt, TOK, program, x0)
    letters, malformed = score(SPEC, fmt, TOK, prompt, generated, states[-1], "letters")
    exact, _ = score(SPEC, fmt, TOK, prompt, generated, states[-1])
    assert letters.tolist() == pytest.approx(wanted)
    assert exact.tolist() == [1.0] + [0.0] * (len(rows) - 1)
    assert malformed.tolist() == [False] * (len(rows) - 1) + [True]


def test_sft_trains_and_gates_on_a_held_out_atom_exactly_when_the_design_shows_it() -> None:
    from hlsm.lm.sft import gate_sources

    sort = SPEC.skills.index("sort")
    for shown in (True, False):
        config = DesignConfig(n_sft=10, n_rl=4, n_unseen=4, n_deeper=2, deeper_depths=(4,))
        design = make_design(
            SPEC, DesignConfig(**{**config.to_dict(), "held_out_skills": ("sort",), "held_out_atomic": shown})
        )
        atoms = resolve_source(design, SourceConfig("atomic", programs="atomic")).programs
        assert (Program.atomic(sort) in atoms) is shown and (Program.atomic(sort) in design.programs("sft")) is shown
        assert (Program.atomic(sort) in gate_sources(design)[1].programs) is shown
