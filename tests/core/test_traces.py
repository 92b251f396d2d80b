"""The trace text format: render/parse round trips, strict errors with line and column, tokenizer."""

from __future__ import annotations

import random

import pytest

from hlsm.programs import Program
from hlsm.spec import Spec
from hlsm.traces import (
    HIDDEN,
    NOP,
    Tokenizer,
    Trace,
    TraceFormatError,
    check_exposure,
    exposure_mask,
    parse,
    parse_lines,
    render,
    render_prompt,
)

TINY = Spec.tiny()
R = TINY.routing_symbols
S = TINY.skill_symbols


def random_program(spec: Spec, rng: random.Random) -> Program:
    if rng.random() < 0.2:
        return Program.atomic(rng.randrange(spec.num_skills))
    depth = rng.randint(1, 5)
    return Program(tuple((rng.randrange(spec.num_routings), rng.randrange(spec.num_skills)) for _ in range(depth)))


def random_state(spec: Spec, rng: random.Random) -> tuple[int, ...]:
    return tuple(rng.randrange(spec.alphabet) for _ in range(spec.length))


def random_exposure(rng: random.Random, depth: int) -> str:
    choice = rng.randrange(3)
    if choice == 0:
        return "full"
    if choice == 1:
        return "answer"
    steps = sorted(rng.sample(range(1, depth + 2), rng.randint(1, depth + 1)))
    return "steps:" + ",".join(map(str, steps))


# ---------------------------------------------------------------------------------------------
# round trips


@pytest.mark.parametrize("spec", [TINY, Spec(), Spec(alphabet=26, length=2)], ids=["A3n3", "A8n6", "A26n2"])
def test_render_parse_round_trip(spec: Spec) -> None:
    rng = random.Random(spec.alphabet)
    exposures_seen: set[str] = set()
    for _ in range(400):
        program = random_program(spec, rng)
        x0 = random_state(spec, rng)
        states = [random_state(spec, rng) for _ in range(program.depth)]
        exposure = random_exposure(rng, program.depth)
        exposures_seen.add(exposure.split(":")[0])
        mask = exposure_mask(exposure, program.depth)
        line = render(spec, program, x0, states, mask)
        trace = parse(spec, line)
        shown = tuple(s if m else None for s, m in zip(states, mask, strict=True))
        assert trace == Trace(x0, program, shown)
        assert trace.mask == mask
        assert trace.answer == (states[-1] if mask[-1] else None)
        # and back: rendering the parsed trace gives the same line
        assert render(spec, trace.program, trace.x0, list(trace.states)) == line
        assert line.startswith(render_prompt(spec, program, x0) + " > ")
        assert line.count(HIDDEN) == mask.count(False)
    assert exposures_seen == {"full", "answer", "steps"}


def test_render_known_line() -> None:
    program = Program(((0, 3), (2, 5)))
    line = render(TINY, program, [0, 1, 2], [[2, 1, 0], [1, 1, 1]], [False, True])
    assert line == f"abc | {R[0]} {S[3]} {R[2]} {S[5]} > ? > bbb"
    assert render(TINY, Program.atomic(4), [2, 2, 0], [[0, 0, 0]]) == f"cca | {S[4]} > aaa"
    assert render(TINY, Program.atomic(4), [2, 2, 0], [None]) == f"cca | {S[4]} > ?"
    with pytest.raises(ValueError, match="needs 2 states, got 1"):
        render(TINY, program, [0, 1, 2], [[2, 1, 0]])


def test_parse_tolerates_extra_spaces_and_a_trailing_newline() -> None:
    trace = parse(TINY, f"  abc  |  {R[1]}   {S[2]} >   cba \n")
    assert trace == Trace((0, 1, 2), Program(((1, 2),)), ((2, 1, 0),))


# ---------------------------------------------------------------------------------------------
# strict errors with line and column


BAD_LINES: list[tuple[str, str, int, str]] = [
    # (case, line, expected column, expected message fragment)
    ("missing |", f"abc {R[0]} {S[1]} > abc", 5, "missing '|'"),
    ("missing | after a lone state", "abc", 4, "missing '|'"),
    ("missing >", f"abc | {R[0]} {S[1]}", 12, "missing '>'"),
    ("unknown symbol", f"abc | {R[0]} S99 > abc", 10, "unknown symbol 'S99' (symbol 2"),
    ("lower-case symbol", f"abc | r0 {S[1]} > abc", 7, "unknown symbol 'r0'"),
    ("state too long", f"abc | {R[0]} {S[1]} > abca", 15, "has length 4, expected n=3"),
    ("state too short", f"abc | {R[0]} {S[1]} > ab", 15, "has length 2, expected n=3"),
    ("input of wrong length", f"abcc | {R[0]} {S[1]} > abc", 1, "has length 4"),
    ("letter outside the alphabet", f"abc | {R[0]} {S[1]} > abd", 15, "'d' outside the alphabet 'abc'"),
    ("input letter outside the alphabet", f"azc | {R[0]} {S[1]} > abc", 1, "'z' outside the alphabet"),
    ("upper-case state", f"abc | {R[0]} {S[1]} > aBc", 15, "outside the alphabet"),
    ("too few states", f"abc | {R[0]} {S[1]} {R[1]} {S[2]} > abc", 24, "2 step(s) but the trace shows 1 state(s)"),
    ("too many states", f"abc | {R[0]} {S[1]} > abc > bca > cab", 19, "1 step(s) but the trace shows 3 state(s)"),
    ("routing without skill at the end", f"abc | {R[0]} {S[1]} {R[2]} > abc > abc", 13, "ends with a routing symbol"),
    ("two routings in a row", f"abc | {R[0]} {R[1]} {S[1]} > abc", 10, "two routing symbols in a row"),
    ("skill without routing", f"abc | {S[1]} {R[0]} {S[2]} > abc > abc", 7, "needs a routing symbol before it"),
    ("second skill without routing", f"abc | {R[0]} {S[1]} {S[2]} > abc > abc", 13, "needs a routing symbol"),
    ("tab", f"abc\t| {R[0]} {S[1]} > abc", 4, "tabs"),
    ("tab later", f"abc | {R[0]} {S[1]} >\tabc", 14, "tabs"),
    ("embedded newline", f"abc | {R[0]} {S[1]}\n> abc", 12, "embedded newlines"),
    ("empty line", "   ", 1, "empty line"),
    ("trailing garbage", f"abc | {R[0]} {S[1]} > abc xyz", 19, "expected '>' before each state, found 'xyz'"),
    ("dangling >", f"abc | {R[0]} {S[1]} > abc >", 20, "must be followed by a state"),
    ("two input states", f"abc bca | {R[0]} {S[1]} > abc", 5, "exactly one input state"),
    ("no input state", f"| {R[0]} {S[1]} > abc", 1, "exactly one input state"),
    ("no symbols", "abc | > abc", 7, "the program has no symbols"),
]


@pytest.mark.parametrize("case, line, column, fragment", BAD_LINES, ids=[case[0] for case in BAD_LINES])
def test_parser_rejects_malformed_lines_with_line_and_column(case: str, line: str, column: int, fragment: str) -> None:
    with pytest.raises(TraceFormatError) as err:
        parse(TINY, line, lineno=7)
    message = str(err.value)
    assert message.startswith(f"line 7, column {column}: "), message
    assert fragment in message, message


def test_the_expected_columns_point_at_the_named_tokens() -> None:
    """Cross-check the hand-counted columns of the table above against ``str.index``."""
    table = {case: (line, column) for case, line, column, _ in BAD_LINES}
    assert table["unknown symbol"][1] == table["unknown symbol"][0].index("S99") + 1
    assert table["state too long"][1] == table["state too long"][0].index("abca", 4) + 1
    assert table["letter outside the alphabet"][1] == table["letter outside the alphabet"][0].index("abd") + 1
    line, column = table["routing without skill at the end"]
    assert line[column - 1 : column - 1 + len(R[2])] == R[2]
    line, column = table["too many states"]
    assert line[column - 1 :] == "> bca > cab"
    line, column = table["too few states"]
    assert column == len(line) + 1
    line, column = table["tab"]
    assert line[column - 1] == "\t"


def test_parse_lines_counts_lines_including_blank_ones() -> None:
    good = f"abc | {R[0]} {S[1]} > bca"
    text = f"{good}\n\n{good}\n   \n{good}\n"
    traces = parse_lines(TINY, text)
    assert len(traces) == 3 and all(t == parse(TINY, good) for t in traces)
    bad = f"{good}\n\n{good}\nabc | {R[0]} {S[1]} > abz\n"
    with pytest.raises(TraceFormatError, match=r"^line 4, column 15: "):
        parse_lines(TINY, bad)
    assert parse_lines(TINY, "") == []


# ---------------------------------------------------------------------------------------------
# exposures


def test_exposure_masks() -> None:
    assert exposure_mask("full", 3) == (True, True, True)
    assert exposure_mask("answer", 3) == (False, False, True)
    assert exposure_mask("answer", 1) == (True,)
    assert exposure_mask("steps:1,3", 3) == (True, False, True)
    assert exposure_mask("steps:1,3", 4) == (True, False, True, False)
    assert exposure_mask("steps:3,1", 2) == (True, False)
    assert exposure_mask("steps: 2 ,", 3) == (False, True, False)
    assert check_exposure("steps:2") == "steps:2"


@pytest.mark.parametrize("exposure", ["", "all", "Full", "steps:", "steps:0", "steps:-1,2", "steps:a", "steps:1;3"])
def test_bad_exposures(exposure: str) -> None:
    with pytest.raises(ValueError, match="exposure"):
        exposure_mask(exposure, 3)
    with pytest.raises(TraceFormatError):
        check_exposure(exposure)


# ---------------------------------------------------------------------------------------------
# tokenizer


@pytest.mark.parametrize("spec", [TINY, Spec()], ids=["A3n3", "A8n6"])
def test_tokenizer_round_trip_and_sizes(spec: Spec) -> None:
    tokenizer = Tokenizer(spec)
    # <pad> <bos> <eos> | > ?, the letters, the skill symbols, the routing symbols
    assert len(tokenizer) == 6 + spec.alphabet + spec.num_skills + spec.num_routings
    assert len(set(tokenizer.vocab)) == len(tokenizer)
    assert (tokenizer.pad, tokenizer.bos, tokenizer.eos) == (0, 1, 2)
    rng = random.Random(3)
    for _ in range(200):
        program = random_program(spec, rng)
        mask = exposure_mask(random_exposure(rng, program.depth), program.depth)
        states = [random_state(spec, rng) for _ in range(program.depth)]
        line = render(spec, program, random_state(spec, rng), states, mask)
        ids = tokenizer.encode(line)
        shown = sum(mask)
        # bos, x0 letters, |, symbols, one > per step, n letters per shown state, ? per hidden state, eos
        expected_length = 1 + spec.length + 1 + len(program.symbols(spec)) + program.depth
        expected_length += shown * spec.length + (program.depth - shown) + 1
        assert len(ids) == expected_length
        assert ids[0] == tokenizer.bos and ids[-1] == tokenizer.eos
        assert all(0 <= i < len(tokenizer) for i in ids)
        assert tokenizer.decode(ids) == line
        assert tokenizer.encode(line, bos=False, eos=False) == ids[1:-1]


def test_tokenizer_extra_symbols_and_unknown_words() -> None:
    tokenizer = Tokenizer(TINY, extra_symbols=("NOP",))
    assert len(tokenizer) == 6 + 3 + 24 + 10 + 1
    assert tokenizer.encode("NOP", bos=False, eos=False) == [len(tokenizer) - 1]
    assert tokenizer.encode("abc", bos=False, eos=False) == [tokenizer.index[c] for c in "abc"]
    assert tokenizer.decode([tokenizer.pad, tokenizer.index["a"], tokenizer.index["c"], tokenizer.pad]) == "ac"
    with pytest.raises(TraceFormatError, match="column 5: 'abd' has no token"):
        tokenizer.encode(f"abc abd {R[0]}")
    with pytest.raises(TraceFormatError, match="'S99' has no token"):
        tokenizer.encode("abc | S99")


# ---------------------------------------------------------------------------------------------
# fixed-width programs (slots) and the symbol echo


@pytest.mark.parametrize("slots, echo", [(5, False), (5, True), (None, True)], ids=["slots", "slots-echo", "echo"])
def test_slots_and_echo_round_trip(slots: int | None, echo: bool) -> None:
    spec = Spec()
    rng = random.Random(11)
    for _ in range(300):
        program = random_program(spec, rng)
        x0 = random_state(spec, rng)
        states = [random_state(spec, rng) for _ in range(program.depth)]
        mask = exposure_mask(random_exposure(rng, program.depth), program.depth)
        line = render(spec, program, x0, states, mask, slots=slots, echo=echo)
        trace = parse(spec, line, slots=slots, echo=echo)
        assert trace == Trace(x0, program, tuple(s if m else None for s, m in zip(states, mask, strict=True)))
        assert line.startswith(render_prompt(spec, program, x0, slots=slots) + " > ")
        words = line.split(" > ")[0].split()[2:]
        assert len(words) == (2 * slots if slots else len(program.symbols(spec)))
        if echo:
            shown = [w.split()[0] for w in line.split(" > ")[1:]]
            assert shown == [spec.skill_symbols[k] for k in program.skills]
        assert Tokenizer(spec, extra_symbols=(NOP,)).decode(Tokenizer(spec, extra_symbols=(NOP,)).encode(line)) == line


def test_slots_known_lines() -> None:
    program = Program(((0, 3), (2, 5)))
    line = render(TINY, program, [0, 1, 2], [[2, 1, 0], [1, 1, 1]], slots=3, echo=True)
    assert line == f"abc | {R[0]} {S[3]} {R[2]} {S[5]} NOP NOP > {S[3]} cba > {S[5]} bbb"
    assert render_prompt(TINY, Program.atomic(4), [2, 2, 0], slots=2) == f"cca | NOP {S[4]} NOP NOP"
    with pytest.raises(
        TraceFormatError, match="depth-2 program does not fit a 1-slot prompt; raise slots to at least 2"
    ):
        render_prompt(TINY, program, [0, 1, 2], slots=1)
    with pytest.raises(TraceFormatError, match="slots must be at least 1"):
        render_prompt(TINY, program, [0, 1, 2], slots=0)
    # the plain parser does not know NOP; the slot parser does not accept a plain program
    with pytest.raises(TraceFormatError, match="unknown symbol 'NOP'"):
        parse(TINY, f"abc | NOP {S[1]} NOP NOP > abc")
    with pytest.raises(TraceFormatError, match="a 2-slot program has 4 symbols"):
        parse(TINY, f"abc | {R[0]} {S[1]} > abc", slots=2)


BAD_SLOT_LINES: list[tuple[str, str, int, str]] = [
    # (case, line, expected column, fragment); 2 slots, echo on
    ("too few symbols", f"abc | {R[0]} {S[1]} NOP > {S[1]} abc", 17, "a 2-slot program has 4 symbols"),
    ("too many symbols", f"abc | {R[0]} {S[1]} NOP NOP NOP > {S[1]} abc", 21, "a 2-slot program has 4 symbols"),
    ("all empty", "abc | NOP NOP NOP NOP > abc", 7, "every slot of the program is empty"),
    ("gap", f"abc | NOP NOP {R[0]} {S[1]} > {S[1]} abc", 15, "slot 2 is used after an empty or atomic slot"),
    ("after atomic", f"abc | NOP {S[1]} {R[0]} {S[1]} > {S[1]} abc", 14, "an atomic program has one step"),
    ("atomic late", f"abc | {R[0]} {S[1]} NOP {S[2]} > {S[1]} abc > {S[2]} abc", 13, "only slot 1 may hold an atomic"),
    ("routing without skill", f"abc | {R[0]} NOP NOP NOP > abc", 10, "slot 1 must end with a skill symbol"),
    ("skill first", f"abc | {S[0]} {S[1]} NOP NOP > {S[1]} abc", 7, "slot 1 must start with a routing symbol or NOP"),
    ("no echo", f"abc | {R[0]} {S[1]} NOP NOP > abc", 23, f"step 1 must echo its skill symbol '{S[1]}'"),
    ("wrong echo", f"abc | {R[0]} {S[1]} NOP NOP > {S[2]} abc", 23, f"'{S[1]}' before its state, found '{S[2]}'"),
    ("echo without state", f"abc | {R[0]} {S[1]} NOP NOP > {S[1]}", 25, "must be followed by a state"),
    ("dangling >", f"abc | {R[0]} {S[1]} NOP NOP >", 22, "found the end of the line"),
    ("extra step", f"abc | {R[0]} {S[1]} NOP NOP > {S[1]} abc > {S[1]} abc", 30, "1 step(s) but the trace shows 2"),
]


@pytest.mark.parametrize("case, line, column, fragment", BAD_SLOT_LINES, ids=[c[0] for c in BAD_SLOT_LINES])
def test_slot_and_echo_parser_errors(case: str, line: str, column: int, fragment: str) -> None:
    with pytest.raises(TraceFormatError) as err:
        parse(TINY, line, lineno=3, slots=2, echo=True)
    message = str(err.value)
    assert message.startswith(f"line 3, column {column}: "), message
    assert fragment in message, message


def test_the_slot_error_columns_point_at_the_named_tokens() -> None:
    table = {case: (line, column) for case, line, column, _ in BAD_SLOT_LINES}
    line, column = table["too few symbols"]
    assert line[column - 1 :].startswith(">")  # where the missing symbol belongs
    line, column = table["too many symbols"]
    assert column == line.index("NOP NOP NOP") + 9  # the fifth symbol
    line, column = table["atomic late"]
    assert line[column - 1 :].startswith(f"NOP {S[2]}")
    for case in ("no echo", "wrong echo"):
        line, column = table[case]
        assert column == line.index(" > ") + 4  # the word after the first '>'
    for case in ("echo without state", "dangling >"):
        line, column = table[case]
        assert column == len(line) + 1
    line, column = table["extra step"]
    assert line[column - 1 :] == f"> {S[1]} abc"
