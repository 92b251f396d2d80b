"""The transformer's task format: programs and inputs as token sequences, generations parsed back.

A training example is one golden trace in the text format of :mod:`hlsm.traces`, tokenised by
:class:`hlsm.traces.Tokenizer` (one token per letter, symbol and separator)::

    <bos> x_0 | <program> > x_1 > ... > x_L <eos>

The *prompt* is ``<bos> x_0 | <program>``; the model is trained to continue it with the *trace*
``> x_1 > ... > x_L <eos>`` (the loss covers the trace tokens, EOS included, and nothing of the
prompt). :class:`TaskFormat` chooses how the program is written:

- ``slots=W`` (default ``4``): ``W`` slots of two symbols (routing or ``NOP``, skill or ``NOP``),
  so every prompt has ``1 + n + 1 + 2 W`` tokens. With variable-length prompts,
  programs deeper than the training depth fail for length reasons alone.
- ``slots=None``: the plain variable-length symbols ``tau_1 sigma_1 ... tau_L sigma_L``.
- ``echo=True``: every step shows its skill symbol before its result (``> S3 fedcba``), the
  positive control under which the entanglement gap disappears.

Generations are parsed back by :func:`hlsm.traces.parse`, the one strict parser of the format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from torch import Tensor

from hlsm.errors import HLSMError
from hlsm.programs import Program
from hlsm.spec import Spec
from hlsm.traces import NOP, STEP_SEP, Tokenizer, TraceFormatError, parse, render, render_prompt


class FormatError(HLSMError):
    """A task format or an example that does not fit it (a program deeper than the slots)."""


@dataclass(frozen=True)
class TaskFormat:
    """How programs and traces are written for the transformer.

    Parameters
    ----------
    slots : int or None
        ``W`` fixed program slots of two symbols each (``NOP`` padding), or None for the plain
        variable-length program of :mod:`hlsm.traces`.
    echo : bool
        Show each step's skill symbol before its state.
    """

    slots: int | None = 4
    echo: bool = False

    def __post_init__(self) -> None:
        if self.slots is not None and (not isinstance(self.slots, int) or isinstance(self.slots, bool)):
            raise FormatError(f"slots must be a whole number or None, got {self.slots!r}")
        if self.slots is not None and self.slots < 1:
            raise FormatError(f"slots must be at least 1 (or None for the plain format), got {self.slots}")
        if not isinstance(self.echo, bool):
            raise FormatError(f"echo must be true or false, got {self.echo!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def prompt_length(self, spec: Spec, program: Program) -> int:
        """Prompt tokens ``<bos> x_0 | program``: ``2 + n + (2 W or the program's symbols)``."""
        return 2 + spec.length + (2 * self.slots if self.slots is not None else len(program.symbols(spec)))

    def trace_length(self, spec: Spec, depth: int) -> int:
        """Trace tokens of a full golden trace, EOS included: ``L (1 + echo + n) + 1``."""
        return depth * (1 + int(self.echo) + spec.length) + 1

    def check(self, program: Program) -> None:
        """Raise :class:`FormatError` if ``program`` does not fit the slots."""
        if self.slots is not None and program.depth > self.slots:
            raise FormatError(
                f"a depth-{program.depth} program does not fit TaskFormat(slots={self.slots}); "
                f"raise slots to at least {program.depth}"
            )


def make_tokenizer(spec: Spec) -> Tokenizer:
    """The tokenizer of every format: :class:`hlsm.traces.Tokenizer` plus the ``NOP`` pad symbol."""
    return Tokenizer(spec, extra_symbols=(NOP,))


def encode_prompt(spec: Spec, fmt: TaskFormat, tokenizer: Tokenizer, program: Program, x0: Sequence[int]) -> list[int]:
    """Token ids of the prompt ``<bos> x_0 | program`` (no EOS)."""
    fmt.check(program)
    return tokenizer.encode(render_prompt(spec, program, x0, slots=fmt.slots), bos=True, eos=False)


def encode_example(
    spec: Spec,
    fmt: TaskFormat,
    tokenizer: Tokenizer,
    program: Program,
    x0: Sequence[int],
    states: Sequence[Sequence[int]],
) -> tuple[list[int], list[bool]]:
    """Token ids of a full golden trace and its loss mask.

    Parameters
    ----------
    program, x0
        The prompt's program and input state (``n`` symbols).
    states
        ``x_1 .. x_L``, one per step (the true execution for SFT).

    Returns
    -------
    ids : list of int
        ``<bos> x_0 | program > x_1 > ... > x_L <eos>``; its first tokens are
        :func:`encode_prompt`'s.
    loss_mask : list of bool
        Same length; True exactly on the trace tokens (from the first ``>`` to EOS inclusive).
    """
    fmt.check(program)
    line = render(spec, program, x0, states, slots=fmt.slots, echo=fmt.echo)
    ids = tokenizer.encode(line, bos=True, eos=True)
    prompt = fmt.prompt_length(spec, program)
    return ids, [False] * prompt + [True] * (len(ids) - prompt)


@dataclass(frozen=True)
class ParsedAnswer:
    """A generation that parses as a trace of the prompt's program.

    Attributes
    ----------
    program : Program
        The program read from the prompt.
    x0 : tuple of int
        The input state read from the prompt.
    states : tuple of tuple of int
        The predicted ``x_1 .. x_L`` (``n`` symbols each).
    """

    program: Program
    x0: tuple[int, ...]
    states: tuple[tuple[int, ...], ...]

    @property
    def answer(self) -> tuple[int, ...]:
        """The predicted final answer ``x_L``."""
        return self.states[-1]


def parse_generation(
    spec: Spec,
    fmt: TaskFormat,
    tokenizer: Tokenizer,
    prompt_ids: Sequence[int] | Tensor,
    generated_ids: Sequence[int] | Tensor,
    *,
    strict: bool = False,
) -> ParsedAnswer | None:
    """Parse a model's continuation of a prompt.

    The generation must be a full trace of the prompt's program followed by EOS: ``> x_1 > ... >
    x_L <eos>`` in ``fmt`` (tokens after the first EOS, e.g. padding, are ignored). Anything else is
    *malformed*: no EOS, a special token before it, a hidden state ``?``, a state of the wrong
    length, a wrong number of steps, a wrong echoed symbol.

    Parameters
    ----------
    prompt_ids
        ``(P,)`` the prompt as encoded by :func:`encode_prompt` (with ``<bos>``).
    generated_ids
        ``(G,)`` the tokens generated after it.
    strict
        Raise :class:`hlsm.traces.TraceFormatError` saying why, instead of returning None.

    Returns
    -------
    ParsedAnswer or None
        None when the generation is malformed (and ``strict`` is False).
    """
    try:
        return _parse(spec, fmt, tokenizer, _as_list(prompt_ids), _as_list(generated_ids))
    except TraceFormatError:
        if strict:
            raise
        return None


def _as_list(ids: Sequence[int] | Tensor) -> list[int]:
    return ids.tolist() if isinstance(ids, Tensor) else list(ids)


def _parse(spec: Spec, fmt: TaskFormat, tokenizer: Tokenizer, prompt: list[int], generated: list[int]) -> ParsedAnswer:
    if not prompt or prompt[0] != tokenizer.bos:
        raise TraceFormatError("the prompt must start with <bos>")
    if tokenizer.eos not in generated:
        raise TraceFormatError("the generation has no <eos>: it did not finish within the token budget")
    body = generated[: generated.index(tokenizer.eos)]
    if not body or body[0] != tokenizer.index[STEP_SEP]:
        raise TraceFormatError(f"the generation must start with '{STEP_SEP}' (the prompt's program is complete)")
    specials = {tokenizer.pad, tokenizer.bos}
    for i, token in enumerate(prompt[1:] + body):
        if token in specials or not 0 <= token < len(tokenizer):
            raise TraceFormatError(f"token {i + 1} ({token}) is a special or unknown token inside the trace")
    trace = parse(spec, tokenizer.decode(prompt + body), slots=fmt.slots, echo=fmt.echo)
    states = []
    for l, state in enumerate(trace.states, start=1):
        if state is None:
            raise TraceFormatError(f"step {l} shows '?' instead of a state")
        states.append(state)
    return ParsedAnswer(trace.program, trace.x0, tuple(states))
