"""The trace text format, exposure masks, a tokenizer and a strict parser.

Format
------
One trace per line::

    <x_0> | <symbols> > <x_1> > ... > <x_L>

for example ``abcdef | R0 S3 R2 S5 > fedcba > ? > cdefab``. ``x_0`` is the prompt's input,
``symbols`` the program's routing/skill symbols (``tau_1 sigma_1 ... tau_L sigma_L``; an atomic
program shows only ``sigma_1``), then one entry per step: the state as letters, or ``?`` where the
exposure mask hides it. The last entry is the answer. Everything before the first ``>`` is the
*prompt*; the rest is the *trace*.

Exposures: ``"full"`` (golden trace, every ``x_l`` shown), ``"answer"`` (only ``x_L``), or
``"steps:1,3"`` (the listed 1-based steps; the answer is shown only if listed).

Two variants, used by the transformer side (``hlsm.lm``), are selected by keyword arguments of
:func:`render` and :func:`parse`:

``slots=W``
    a fixed-width program: ``W`` slots of two symbols each, a step ``(m, k)`` as ``tau_m sigma_k``,
    an atomic program's step as ``NOP sigma_k`` (slot 1 only) and unused slots as ``NOP NOP``
    (always at the end), so every prompt has ``2 W`` symbols:
    ``abcdef | R0 S3 R0 S5 NOP NOP NOP NOP > ...``.
``echo=True``
    each step shows its skill symbol before its state: ``> S3 fedcba`` (or ``> S3 ?``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hlsm.errors import HLSMError
from hlsm.programs import Program, ProgramError
from hlsm.spec import LETTERS, Spec, SpecError

HIDDEN = "?"
PROMPT_SEP = "|"
STEP_SEP = ">"
NOP = "NOP"
"""Pad symbol of the fixed-width program format (``slots=W``); add it to a tokenizer with
``Tokenizer(spec, extra_symbols=(NOP,))``."""


class TraceFormatError(HLSMError):
    """A malformed trace line; the message gives the line and column of the problem."""


def exposure_mask(exposure: str, depth: int) -> tuple[bool, ...]:
    """Which of ``x_1 .. x_L`` a trace of ``depth`` steps shows under ``exposure``."""
    if exposure == "full":
        return (True,) * depth
    if exposure == "answer":
        return (False,) * (depth - 1) + (True,)
    if exposure.startswith("steps:"):
        try:
            steps = {int(s) for s in exposure[len("steps:") :].split(",") if s.strip()}
        except ValueError:
            steps = {-1}
        if not steps or min(steps) < 1:
            raise TraceFormatError(f"exposure '{exposure}' must list 1-based steps, e.g. 'steps:1,3'")
        return tuple(step in steps for step in range(1, depth + 1))
    raise TraceFormatError(f"unknown exposure '{exposure}'; use 'full', 'answer' or 'steps:1,3'")


def check_exposure(exposure: str, depth: int | None = None) -> str:
    """Validate an exposure string (raises :class:`TraceFormatError` with the fix); return it.

    With ``depth`` (the deepest program it will be applied to), a ``steps:`` exposure that lists a
    step past it is refused: it would hide states silently (``steps:9`` on depth-3 programs shows none).
    """
    exposure_mask(exposure, 1)
    if depth is not None and exposure.startswith("steps:"):
        steps = [int(s) for s in exposure[len("steps:") :].split(",") if s.strip()]
        beyond = sorted(s for s in steps if s > depth)
        if beyond:
            raise TraceFormatError(
                f"exposure '{exposure}' lists step(s) {beyond} but the deepest program has {depth} step(s); "
                f"list steps between 1 and {depth}"
            )
    return exposure


@dataclass(frozen=True)
class Trace:
    """A parsed trace: input, program, shown states (``None`` where hidden)."""

    x0: tuple[int, ...]
    program: Program
    states: tuple[tuple[int, ...] | None, ...]

    @property
    def mask(self) -> tuple[bool, ...]:
        return tuple(s is not None for s in self.states)

    @property
    def answer(self) -> tuple[int, ...] | None:
        return self.states[-1]


def program_symbols(spec: Spec, program: Program, slots: int | None = None) -> tuple[str, ...]:
    """The prompt's symbols: plain (``slots=None``) or ``2 * slots`` fixed-width symbols.

    Raises
    ------
    TraceFormatError
        If the program has more steps than ``slots``.
    """
    if slots is None:
        return program.symbols(spec)
    if slots < 1:
        raise TraceFormatError(f"slots must be at least 1 (or None for the plain format), got {slots}")
    if program.depth > slots:
        raise TraceFormatError(
            f"a depth-{program.depth} program does not fit a {slots}-slot prompt; raise slots to at least "
            f"{program.depth}"
        )
    out: list[str] = []
    for m, k in program.steps:
        out += [NOP if m < 0 else spec.routing_symbols[m], spec.skill_symbols[k]]
    return tuple(out + [NOP] * (2 * (slots - program.depth)))


def render(
    spec: Spec,
    program: Program,
    x0: Sequence[int],
    states: Sequence[Sequence[int] | None],
    mask: Sequence[bool] | None = None,
    *,
    slots: int | None = None,
    echo: bool = False,
) -> str:
    """One trace line. ``states`` are ``x_1 .. x_L``; ``mask[l]`` False hides ``x_{l+1}``.

    ``slots`` and ``echo`` select the fixed-width program and the symbol echo (module docstring).
    """
    if len(states) != program.depth:
        raise ValueError(f"a depth-{program.depth} program needs {program.depth} states, got {len(states)}")
    mask = [s is not None for s in states] if mask is None else list(mask)
    parts = [spec.render_state(x0), PROMPT_SEP, *program_symbols(spec, program, slots)]
    for (_, k), shown, state in zip(program.steps, mask, states, strict=True):
        parts += [STEP_SEP, *([spec.skill_symbols[k]] if echo else [])]
        parts.append(spec.render_state(state) if shown and state is not None else HIDDEN)
    return " ".join(parts)


def render_prompt(spec: Spec, program: Program, x0: Sequence[int], *, slots: int | None = None) -> str:
    """The prompt part alone: ``x_0 | symbols``."""
    return " ".join([spec.render_state(x0), PROMPT_SEP, *program_symbols(spec, program, slots)])


def _words(line: str) -> list[tuple[str, int]]:
    """Whitespace-separated words with their 1-based columns."""
    out, col = [], 0
    for part in line.split(" "):
        col += 1
        if part:
            out.append((part, col))
        col += len(part)
    return out


def parse(spec: Spec, line: str, lineno: int = 1, *, slots: int | None = None, echo: bool = False) -> Trace:
    """Parse one trace line strictly.

    ``slots`` and ``echo`` select the fixed-width program and the symbol echo (module docstring);
    a line must use exactly the variant asked for.

    Raises
    ------
    TraceFormatError
        With ``line L, column C`` and what was expected, for: a missing ``|`` or ``>``, an unknown
        symbol, a state of the wrong length or with letters outside the alphabet, a number of
        states that does not match the program's depth, tabs or trailing garbage; with ``slots``,
        a program that does not fill exactly ``slots`` two-symbol slots (``NOP`` padding last);
        with ``echo``, a step whose echoed symbol is missing or differs from its program step's.
    """

    def fail(col: int, message: str) -> TraceFormatError:
        return TraceFormatError(f"line {lineno}, column {col}: {message}")

    bad = [i for i, c in enumerate(line.rstrip("\n")) if c in "\t\n"]
    if bad:
        raise fail(bad[0] + 1, "tabs and embedded newlines are not allowed; separate fields by spaces")
    words = _words(line.rstrip("\n"))
    if not words:
        raise fail(1, "empty line; expected '<x0> | <symbols> > <x1> ...'")
    try:
        sep = [w for w, _ in words].index(PROMPT_SEP)
    except ValueError:
        col = words[1][1] if len(words) > 1 else len(line) + 1  # where the separator was expected
        raise fail(col, f"missing '{PROMPT_SEP}' between the input state and the program") from None
    if sep != 1:
        raise fail(words[min(sep, 1)][1], f"expected exactly one input state before '{PROMPT_SEP}'")
    x0_text, x0_col = words[0]
    try:
        x0 = tuple(spec.parse_state(x0_text))
    except SpecError as err:
        raise fail(x0_col, str(err)) from None
    rest = words[2:]
    steps_at = [i for i, (w, _) in enumerate(rest) if w == STEP_SEP]
    if not steps_at:
        raise fail(len(line) + 1, f"missing '{STEP_SEP}' before the first state of the trace")
    symbols = rest[: steps_at[0]]
    if not symbols:
        raise fail(rest[0][1], "the program has no symbols")
    known = {*spec.skill_symbols, *spec.routing_symbols, *((NOP,) if slots is not None else ())}
    for i, (word, col) in enumerate(symbols):
        if word not in known:
            raise fail(col, f"unknown symbol '{word}' (symbol {i + 1} of the program)")
    if slots is not None:
        symbols = _unslot(spec, symbols, slots, fail, after=rest[steps_at[0]][1])
    try:
        program = Program.from_symbols(spec, [w for w, _ in symbols])
    except ProgramError as err:
        raise fail(symbols[err.symbol if err.symbol is not None else 0][1], str(err)) from None
    entries = rest[steps_at[0] :]
    stride = 3 if echo else 2
    states: list[tuple[int, ...] | None] = []
    i = 0
    while i < len(entries):
        word, col = entries[i]
        if word != STEP_SEP:
            raise fail(col, f"expected '{STEP_SEP}' before each state, found '{word}'")
        if echo and len(states) < program.depth:
            expected = spec.skill_symbols[program.steps[len(states)][1]]
            if i + 1 >= len(entries) or entries[i + 1][0] != expected:
                found = f"found '{entries[i + 1][0]}'" if i + 1 < len(entries) else "found the end of the line"
                at = entries[i + 1][1] if i + 1 < len(entries) else col + 1
                raise fail(
                    at, f"step {len(states) + 1} must echo its skill symbol '{expected}' before its state, {found}"
                )
        if i + stride - 1 >= len(entries):
            raise fail(entries[-1][1] + len(entries[-1][0]), f"'{STEP_SEP}' must be followed by a state or '{HIDDEN}'")
        value, vcol = entries[i + stride - 1]
        if value == HIDDEN:
            states.append(None)
        else:
            try:
                states.append(tuple(spec.parse_state(value)))
            except SpecError as err:
                raise fail(vcol, str(err)) from None
        i += stride
    if len(states) != program.depth:
        # too many: the first surplus '>'; too few: the end of the line, where the next '>' belongs
        col = entries[stride * program.depth][1] if len(states) > program.depth else len(line) + 1
        raise fail(col, f"the program has {program.depth} step(s) but the trace shows {len(states)} state(s)")
    return Trace(x0, program, tuple(states))


def _unslot(
    spec: Spec, symbols: list[tuple[str, int]], slots: int, fail: Callable[[int, str], TraceFormatError], after: int
) -> list[tuple[str, int]]:
    """Fixed-width symbols ``(word, column)`` -> the plain symbols of the same program (strict)."""
    if len(symbols) != 2 * slots:
        col = symbols[2 * slots][1] if len(symbols) > 2 * slots else after
        raise fail(
            col, f"a {slots}-slot program has {2 * slots} symbols (two per slot, {NOP} padding), got {len(symbols)}"
        )
    plain: list[tuple[str, int]] = []
    ended = atomic = False
    for j in range(slots):
        (a, acol), (b, bcol) = symbols[2 * j], symbols[2 * j + 1]
        if a == NOP and b == NOP:
            ended = True
            continue
        if ended or atomic:
            why = "an atomic program has one step" if atomic else "programs fill the slots from the left"
            raise fail(acol, f"slot {j + 1} is used after an empty or atomic slot; {why}")
        if b not in spec.skill_symbols:
            raise fail(bcol, f"slot {j + 1} must end with a skill symbol, found '{b}'")
        if a == NOP:
            if j != 0:
                raise fail(
                    acol, f"slot {j + 1} has no routing symbol; only slot 1 may hold an atomic step ({NOP} skill)"
                )
            atomic = True
        elif a not in spec.routing_symbols:
            raise fail(acol, f"slot {j + 1} must start with a routing symbol or {NOP}, found '{a}'")
        plain += [(b, bcol)] if a == NOP else [(a, acol), (b, bcol)]
    if not plain:
        raise fail(symbols[0][1], f"every slot of the program is empty ({NOP} {NOP}); the program needs a step")
    return plain


def parse_lines(spec: Spec, text: str, *, slots: int | None = None, echo: bool = False) -> list[Trace]:
    """Parse a block of trace lines (blank lines skipped); errors carry the line number."""
    lines = enumerate(text.splitlines(), start=1)
    return [parse(spec, line, i, slots=slots, echo=echo) for i, line in lines if line.strip()]


# ---------------------------------------------------------------------------------------------
# tokenizer


SPECIALS = ("<pad>", "<bos>", "<eos>")


class Tokenizer:
    """Word-level tokens for the trace format: one token per letter, symbol and separator.

    The vocabulary is ``<pad> <bos> <eos> | > ?``, the ``A`` letters, then the skill and routing
    symbols of the spec. A state ``x`` becomes ``n`` letter tokens; spaces are not tokens.
    """

    def __init__(self, spec: Spec, extra_symbols: Sequence[str] = ()) -> None:
        self.spec = spec
        vocab = [*SPECIALS, PROMPT_SEP, STEP_SEP, HIDDEN, *LETTERS[: spec.alphabet]]
        vocab += [*spec.skill_symbols, *spec.routing_symbols, *extra_symbols]
        self.vocab: tuple[str, ...] = tuple(vocab)
        self.index = {t: i for i, t in enumerate(self.vocab)}
        self.pad, self.bos, self.eos = (self.index[s] for s in SPECIALS)

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, line: str, bos: bool = True, eos: bool = True) -> list[int]:
        """Token ids of a trace (or prompt) line."""
        ids = [self.bos] if bos else []
        for word, col in _words(line):
            if word in self.index and len(word) > 0 and not word[0].islower():
                ids.append(self.index[word])
            elif all(c in self.index for c in word) and word.islower():
                ids += [self.index[c] for c in word]
            else:
                raise TraceFormatError(f"column {col}: '{word}' has no token in this vocabulary")
        if eos:
            ids.append(self.eos)
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Inverse of :meth:`encode` (specials dropped); letters of one state are joined."""
        words: list[str] = []
        letters = set(LETTERS[: self.spec.alphabet])
        prev_letter = False
        for i in ids:
            token = self.vocab[i]
            if token in SPECIALS:
                continue
            if token in letters and prev_letter:
                words[-1] += token
            else:
                words.append(token)
            prev_letter = token in letters
        return " ".join(words)
