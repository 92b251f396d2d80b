"""The module library: skills and routing mechanisms on fixed-length strings.

A *state* is a string of ``n`` symbols over the alphabet ``{0, ..., A-1}``; batches of states are
``(batch, n)`` integer tensors. A **skill** maps a state to a state; a **routing** maps a history
``(x_0, ..., x_{l-1})`` — a ``(batch, l, n)`` tensor — to the input of the next step. Every module
maps into ``X = {0..A-1}^n``, so the state space is closed (``theory/model.md``, section 1).

The registry is public: :func:`register_skill` and :func:`register_routing` add a plain Python
function on tensors, which is then usable wherever a :class:`~hlsm.spec.Spec` names it (simulator,
Pyro model, checker, transformer data).

The registry and the default library's 34 implementations, ten lines each, are read together; the
registry probes each function it holds.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from hlsm.errors import HLSMError, shorten

SkillFn = Callable[[Tensor, int], Tensor]
"""``fn(x, alphabet) -> y`` with ``x, y`` of shape ``(batch, n)`` and values in ``[0, alphabet)``."""

RoutingFn = Callable[[Tensor, int], Tensor]
"""``fn(history, alphabet) -> u`` with ``history`` of shape ``(batch, l, n)``, ``l >= 1``."""

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

BUILT_IN = "built in"
"""The :attr:`Skill.origin` of the default library's modules (called without the user-code boundary)."""


class ModuleError(HLSMError):
    """An unknown module name, an invalid registration, or a module that cannot handle (A, n)."""


@dataclass(frozen=True)
class Skill:
    """A local operation ``f : X -> X``.

    Attributes
    ----------
    name : str
        Registry key, lower-case identifier.
    symbol : str
        Opaque symbol used in prompts (``S0``, ``S1``, ...). Which skill a symbol denotes is the
        latent *binding* a learner must infer.
    fn : SkillFn
        Vectorised implementation on ``(batch, n)`` integer tensors.
    description : str
        One line saying what the skill does.
    bijective : bool
        Whether ``f`` is a bijection of ``X`` for every supported ``(A, n)``.
    min_alphabet, min_length : int
        Smallest alphabet size and string length the skill is defined for.
    """

    name: str
    symbol: str
    fn: SkillFn
    description: str
    bijective: bool
    min_alphabet: int = 2
    min_length: int = 1
    origin: str = BUILT_IN
    """Where it was registered: :data:`BUILT_IN`, ``plugin file 'p.py'``, ``plugin entry point 'e'``
    or ``registered in Python``."""

    @property
    def kind(self) -> str:
        return "skill"

    def supports(self, alphabet: int, length: int) -> bool:
        return alphabet >= self.min_alphabet and length >= self.min_length

    def __call__(self, x: Tensor, alphabet: int) -> Tensor:
        return self.fn(x, alphabet) if self.origin == BUILT_IN else _call_user(self, x, alphabet)


@dataclass(frozen=True)
class Routing:
    """A routing mechanism ``rho : (x_0, ..., x_{l-1}) -> X``: which earlier results feed a step.

    History positions that do not exist yet (``x_{l-2}`` at step 1, say) fall back to ``x_0``;
    see :func:`history_item`.
    """

    name: str
    symbol: str
    fn: RoutingFn
    description: str
    min_alphabet: int = 2
    min_length: int = 1
    origin: str = BUILT_IN
    """Where it was registered (as :attr:`Skill.origin`)."""
    reads: tuple[int, ...] | None = None
    """The history items it reads (negative: from the end, as :func:`history_item`), declaring it
    position-wise (output symbol ``i`` depends on symbols ``i`` of those items only); ``None``:
    not declared (the scalable likelihood then treats the routing as reading anything)."""

    @property
    def kind(self) -> str:
        return "routing"

    def read_positions(self, length: int) -> tuple[int, ...] | None:
        """The positions of a length-``length`` history it reads (a missing one falls back to ``x_0``,
        as :func:`history_item`), sorted; ``None`` when :attr:`reads` is not declared."""
        if self.reads is None:
            return None
        out = set()
        for p in self.reads:
            i = p if p >= 0 else length + p
            out.add(i if 0 <= i < length else 0)
        return tuple(sorted(out))

    def supports(self, alphabet: int, length: int) -> bool:
        return alphabet >= self.min_alphabet and length >= self.min_length

    def __call__(self, history: Tensor, alphabet: int) -> Tensor:
        return self.fn(history, alphabet) if self.origin == BUILT_IN else _call_user(self, history, alphabet)


def _call_user(module: Skill | Routing, x: Tensor, alphabet: int) -> Tensor:
    """A module that is not built in, called at the boundary: what it prints goes to stderr under its
    name, and an exception or ``sys.exit`` in it becomes a :class:`ModuleError` that names the module,
    where it was registered and an input it fails on."""
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            return module.fn(x, alphabet)
    except MemoryError:
        raise  # the machine's limit, not the module's fault
    except (Exception, SystemExit) as err:  # a user's function may raise anything, sys.exit included
        what = (
            f"called sys.exit({err.code!r})" if isinstance(err, SystemExit) else f"raised {type(err).__name__}: {err}"
        )
        raise ModuleError(
            f"{module.kind} '{module.name}' ({module.origin}) {what} on a batch of {x.shape[0]} inputs"
            f"{_failing_input(module, x, alphabet)}; fix the module, or leave it out of the spec"
        ) from err
    finally:
        if printed.getvalue():
            for line in printed.getvalue().splitlines():
                print(f"[{module.kind} '{module.name}', {module.origin}] {line}", file=sys.stderr)


def _failing_input(module: Skill | Routing, x: Tensor, alphabet: int, tries: int = 256) -> str:
    """``", e.g. on input [..]"`` for the first row (of the first ``tries``) the module fails on alone."""
    for i in range(min(tries, x.shape[0])):
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                module.fn(x[i : i + 1].clone(), alphabet)
        except (Exception, SystemExit):
            return f", e.g. on input {x[i].tolist()}"
    return " (no single row of it fails alone)"


_ORIGIN = ["registered in Python"]
"""Where modules registered now come from (:func:`registering_from`)."""


@contextlib.contextmanager
def registering_from(origin: str) -> Iterator[None]:
    """Modules registered inside the block record ``origin`` (``plugin file 'p.py'``), which errors
    from them name."""
    _ORIGIN.append(origin)
    try:
        yield
    finally:
        _ORIGIN.pop()


_SKILLS: dict[str, Skill] = {}
_ROUTINGS: dict[str, Routing] = {}


def register_skill(
    name: str,
    fn: SkillFn,
    description: str,
    *,
    bijective: bool,
    min_alphabet: int = 2,
    min_length: int = 1,
    symbol: str | None = None,
) -> Skill:
    """Add a skill to the registry and return it.

    ``fn(x, alphabet)`` must map a ``(batch, n)`` integer tensor with values in ``[0, alphabet)``
    to a tensor of the same shape and range, row by row (no mixing across the batch),
    deterministically. The function is checked at registration (:func:`check_module`). The symbol
    defaults to ``S`` and the name in CamelCase (``double_first`` -> ``SDoubleFirst``): it depends on
    the name only, so processes that register the same modules in another order agree on symbols.
    """
    _check_arguments(name, fn, description, min_alphabet, min_length, symbol, bijective)
    _check_name(name, _SKILLS, "skill")
    sym = symbol if symbol is not None else _default_symbol("S", name)
    _check_symbol(sym, "S", "skill")
    skill = Skill(name, sym, fn, description, bijective, min_alphabet, min_length, _ORIGIN[-1])
    _probe(skill)
    _SKILLS[name] = skill
    return skill


def register_routing(
    name: str,
    fn: RoutingFn,
    description: str,
    *,
    min_alphabet: int = 2,
    min_length: int = 1,
    symbol: str | None = None,
    reads: Sequence[int] | None = None,
) -> Routing:
    """Add a routing mechanism to the registry and return it.

    ``fn(history, alphabet)`` takes a ``(batch, l, n)`` tensor (``l >= 1`` earlier results, oldest
    first) and returns the ``(batch, n)`` input of the next step. Use :func:`history_item` to read
    positions that may not exist yet. ``reads`` (optional) declares the history items it reads and
    that it acts position by position (``(-1, 0)``: the last result and the input); the scalable
    likelihood uses it, and registration checks it on random histories. Checked at registration like
    a skill (:func:`check_module`); the symbol defaults to ``R`` and the name in CamelCase.
    """
    _check_arguments(name, fn, description, min_alphabet, min_length, symbol)
    if reads is not None and (
        isinstance(reads, (str, bytes))
        or not all(isinstance(p, int) and not isinstance(p, bool) for p in reads)
        or not reads
    ):
        raise ModuleError(f"reads must be a non-empty sequence of history positions (ints), got {reads!r}")
    _check_name(name, _ROUTINGS, "routing")
    sym = symbol if symbol is not None else _default_symbol("R", name)
    _check_symbol(sym, "R", "routing")
    declared = None if reads is None else tuple(reads)
    routing = Routing(name, sym, fn, description, min_alphabet, min_length, _ORIGIN[-1], declared)
    _probe(routing)
    _ROUTINGS[name] = routing
    return routing


def unregister(name: str) -> None:
    """Remove a module added with :func:`register_skill` / :func:`register_routing`."""
    if name in DEFAULT_SKILLS or name in DEFAULT_ROUTINGS:
        raise ModuleError(f"'{name}' is part of the default library and cannot be removed")
    if _SKILLS.pop(name, None) is None and _ROUTINGS.pop(name, None) is None:
        raise ModuleError(f"no registered module is named '{name}'")


def get_skill(name: str) -> Skill:
    """The registered skill called ``name``; a clear error naming the known skills otherwise."""
    try:
        return _SKILLS[name]
    except KeyError:
        raise ModuleError(
            f"unknown skill '{name}'. Known skills: {', '.join(_SKILLS)}. "
            "Register a custom one with hlsm.register_skill(name, fn, description, bijective=...)."
        ) from None


def get_routing(name: str) -> Routing:
    """The registered routing called ``name``; a clear error naming the known routings otherwise."""
    try:
        return _ROUTINGS[name]
    except KeyError:
        raise ModuleError(
            f"unknown routing '{name}'. Known routings: {', '.join(_ROUTINGS)}. "
            "Register a custom one with hlsm.register_routing(name, fn, description)."
        ) from None


def skills() -> tuple[Skill, ...]:
    """Every registered skill, in registration order."""
    return tuple(_SKILLS.values())


def routings() -> tuple[Routing, ...]:
    """Every registered routing, in registration order."""
    return tuple(_ROUTINGS.values())


def _check_name(name: str, table: dict[str, Skill] | dict[str, Routing], kind: str) -> None:
    if not _NAME.match(name):
        raise ModuleError(f"{kind} name '{name}' must be a lower-case identifier such as 'my_op'")
    if name in _SKILLS or name in _ROUTINGS:
        raise ModuleError(f"a module named '{name}' is already registered; pick another name")


def _default_symbol(prefix: str, name: str) -> str:
    """``prefix`` and the name in CamelCase: ``("S", "double_first") -> "SDoubleFirst"`` (order-free)."""
    return prefix + "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


RESERVED_SYMBOLS = frozenset({"NOP"})
"""Tokens of the trace format that no module symbol may take (``NOP`` pads the program slots)."""


def _check_symbol(symbol: str, prefix: str, kind: str) -> None:
    used = {m.symbol for m in _SKILLS.values()} | {m.symbol for m in _ROUTINGS.values()}
    if not isinstance(symbol, str) or not re.match(rf"^{prefix}[A-Za-z0-9]+$", symbol):
        raise ModuleError(
            f"{kind} symbol {symbol!r} must be '{prefix}' followed by letters or digits (e.g. '{prefix}30'): "
            f"skill symbols start with S, routing symbols with R"
        )
    if symbol in RESERVED_SYMBOLS:
        raise ModuleError(f"symbol '{symbol}' is reserved by the trace format; pick another")
    if symbol in used:
        raise ModuleError(f"symbol '{symbol}' is already used by another module")


def _check_arguments(
    name: object,
    fn: object,
    description: object,
    min_alphabet: object,
    min_length: object,
    symbol: object,
    bijective: object = False,
) -> None:
    """The types of a registration's arguments, named in the message."""
    checks = [
        ("name", name, isinstance(name, str), "a string"),
        ("fn", fn, callable(fn), "a function"),
        ("description", description, isinstance(description, str), "a string"),
        ("bijective", bijective, isinstance(bijective, bool), "True or False"),
        ("symbol", symbol, symbol is None or isinstance(symbol, str), "a string or None"),
    ]
    for arg, value in (("min_alphabet", min_alphabet), ("min_length", min_length)):
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= (2 if arg == "min_alphabet" else 1)
        checks.append((arg, value, ok, "an integer >= 2" if arg == "min_alphabet" else "an integer >= 1"))
    for arg, value, ok, want in checks:
        if not ok:
            raise ModuleError(f"{arg} must be {want}, got {type(value).__name__} {shorten(repr(value), 80)}")


PROBE_SIZES = ((3, 4), (8, 6), (5, 7))
"""``(alphabet, length)`` pairs a new module is checked at (raised to its minimums); a spec checks its own."""


def _probe(module: Skill | Routing) -> None:
    """Check a new module at a few sizes (:data:`PROBE_SIZES`), with :func:`check_module`."""
    for alphabet, length in dict.fromkeys(
        (max(a, module.min_alphabet), max(n, module.min_length)) for a, n in PROBE_SIZES
    ):
        check_module(module, alphabet, length)


PROBE_BATCHES = (16, 4096)
"""Batch sizes a module that is not built in is checked at: a small one, and one as large as the
commands' batches of traces (a module that mixes rows only in large batches is caught)."""


def check_module(module: Skill | Routing, alphabet: int, length: int) -> None:
    """What can be checked cheaply of a module at one size, on random inputs: it runs; it returns an int64
    tensor of shape ``(batch, n)`` (the dtype and shape named otherwise); its values stay in
    ``[0, alphabet)``; two calls agree (deterministic); and a permuted batch gives the permuted output
    (rows do not mix), at each of :data:`PROBE_BATCHES` (the built-in modules at the first).
    Raises :class:`ModuleError` naming the module, the size and what failed."""
    for batch in PROBE_BATCHES[:1] if module.origin == BUILT_IN else PROBE_BATCHES:
        _check_batch(module, alphabet, length, batch)


def _check_batch(module: Skill | Routing, alphabet: int, length: int, batch: int) -> None:
    gen = torch.Generator().manual_seed(0)
    shape = (batch, length) if isinstance(module, Skill) else (batch, 3, length)
    x = torch.randint(alphabet, shape, generator=gen)
    where = f"{module.kind} '{module.name}' at alphabet {alphabet}, length {length}"

    def run(inputs: Tensor) -> Tensor:
        try:
            return module.fn(inputs.clone(), alphabet)
        except Exception as err:  # a user function may raise anything
            raise ModuleError(f"{where} failed on a ({batch}, ...) test batch: {err}") from err

    y = run(x)
    if not isinstance(y, Tensor) or tuple(y.shape) != (batch, length) or y.dtype != torch.int64:
        got = f"{y.dtype} of shape {tuple(y.shape)}" if isinstance(y, Tensor) else type(y).__name__
        raise ModuleError(
            f"{where} must return an int64 tensor of shape (batch, n) = ({batch}, {length}); it returned {got}"
        )
    if int(y.min()) < 0 or int(y.max()) >= alphabet:
        raise ModuleError(f"{where} left the alphabet: values must be in [0, {alphabet})")
    if not torch.equal(run(x), y):
        raise ModuleError(f"{where} is not deterministic: two calls on the same batch differ")
    perm = torch.randperm(batch, generator=gen)
    if not torch.equal(run(x[perm]), y[perm]):
        raise ModuleError(f"{where} mixes rows of the batch: a permuted batch did not give the permuted output")
    if isinstance(module, Routing) and module.reads is not None:
        for items in READS_HISTORIES:  # several lengths: at one length, -2 and 1 can be the same item
            h = torch.randint(alphabet, (batch, items, length), generator=gen)
            out = run(h)
            read = module.read_positions(items)
            assert read is not None
            for pos in range(items):  # an item it does not declare changes nothing
                if pos not in read:
                    other = h.clone()
                    other[:, pos] = (other[:, pos] + 1) % alphabet
                    if not torch.equal(run(other), out):
                        raise ModuleError(
                            f"{where} reads history item {pos} of {items}, which its reads={module.reads} leave out"
                        )
            for i in range(length):  # symbol i of the output depends on symbols i only
                other = h.clone()
                other[:, :, [j for j in range(length) if j != i]] += 1
                if not torch.equal(run(other % alphabet)[:, i], out[:, i]):
                    raise ModuleError(f"{where} is not position-wise, as reads={module.reads} declares")


READS_HISTORIES = (1, 2, 3, 5)
"""History lengths a routing's declared reads are checked at."""


# ---------------------------------------------------------------------------------------------
# default skills


def _reverse(x: Tensor, a: int) -> Tensor:
    return x.flip(-1)


def _rotate_left(x: Tensor, a: int) -> Tensor:
    return x.roll(-1, dims=-1)


def _rotate_right(x: Tensor, a: int) -> Tensor:
    return x.roll(1, dims=-1)


def _shift_up(x: Tensor, a: int) -> Tensor:
    return (x + 1) % a


def _shift_down(x: Tensor, a: int) -> Tensor:
    return (x - 1) % a


def _complement(x: Tensor, a: int) -> Tensor:
    return (a - 1) - x


def _swap_pairs(x: Tensor, a: int) -> Tensor:
    n = x.shape[-1]
    idx = torch.arange(n) ^ 1
    idx[idx >= n] = n - 1  # odd length: the last symbol stays
    return x[..., idx]


def _swap_halves(x: Tensor, a: int) -> Tensor:
    n = x.shape[-1]
    h = n // 2
    idx = torch.cat([torch.arange(n - h, n), torch.arange(h, n - h), torch.arange(h)])
    return x[..., idx]


def _interleave(x: Tensor, a: int) -> Tensor:
    n = x.shape[-1]
    return x[..., torch.cat([torch.arange(0, n, 2), torch.arange(1, n, 2)])]


def _deinterleave(x: Tensor, a: int) -> Tensor:
    n = x.shape[-1]
    inverse = torch.argsort(torch.cat([torch.arange(0, n, 2), torch.arange(1, n, 2)]))
    return x[..., inverse]


def _prefix_sum(x: Tensor, a: int) -> Tensor:
    return x.cumsum(-1) % a


def _difference(x: Tensor, a: int) -> Tensor:
    prev = torch.cat([torch.zeros_like(x[..., :1]), x[..., :-1]], dim=-1)
    return (x - prev) % a


def _shift_odd(x: Tensor, a: int) -> Tensor:
    step = (torch.arange(x.shape[-1], device=x.device) % 2).to(x.dtype)
    return (x + step) % a


def _sort(x: Tensor, a: int) -> Tensor:
    return x.sort(-1).values


def _sort_desc(x: Tensor, a: int) -> Tensor:
    return x.sort(-1, descending=True).values


def _fill_first(x: Tensor, a: int) -> Tensor:
    return x[..., :1].expand_as(x).clone()


def _fill_last(x: Tensor, a: int) -> Tensor:
    return x[..., -1:].expand_as(x).clone()


def _running_max(x: Tensor, a: int) -> Tensor:
    return x.cummax(-1).values


def _running_min(x: Tensor, a: int) -> Tensor:
    return x.cummin(-1).values


def _palindrome(x: Tensor, a: int) -> Tensor:
    n = x.shape[-1]
    idx = torch.arange(n, device=x.device)
    return x[..., torch.minimum(idx, n - 1 - idx)]


def _max_neighbour(x: Tensor, a: int) -> Tensor:
    return torch.maximum(x, x.roll(-1, dims=-1))


def _min_reverse(x: Tensor, a: int) -> Tensor:
    return torch.minimum(x, x.flip(-1))


def _zero_odd(x: Tensor, a: int) -> Tensor:
    keep = (torch.arange(x.shape[-1], device=x.device) % 2 == 0).to(x.dtype)
    return x * keep


def _count(x: Tensor, a: int) -> Tensor:
    counts = (x.unsqueeze(-1) == x.unsqueeze(-2)).sum(-1)
    return (counts - 1) % a


# ---------------------------------------------------------------------------------------------
# default routings


def history_item(history: Tensor, position: int) -> Tensor:
    """Item ``position`` of a ``(batch, l, n)`` history; negative positions count from the end.

    A position that does not exist yet falls back to ``x_0`` (the prompt's input), so every
    routing is defined from the first step on.
    """
    length = history.shape[-2]
    index = position if position >= 0 else length + position
    if index < 0 or index >= length:
        index = 0
    return history[..., index, :]


def _chain(h: Tensor, a: int) -> Tensor:
    return history_item(h, -1)


def _restart(h: Tensor, a: int) -> Tensor:
    return history_item(h, 0)


def _skip(h: Tensor, a: int) -> Tensor:
    return history_item(h, -2)


def _reuse_first(h: Tensor, a: int) -> Tensor:
    return history_item(h, 1)


def _add_first(h: Tensor, a: int) -> Tensor:
    return (history_item(h, -1) + history_item(h, 0)) % a


def _max_first_merge(h: Tensor, a: int) -> Tensor:
    return torch.maximum(history_item(h, -1), history_item(h, 0))


def _splice(h: Tensor, a: int) -> Tensor:
    last, first = history_item(h, -1), history_item(h, 0)
    half = last.shape[-1] // 2
    return torch.cat([last[..., :half], first[..., half:]], dim=-1)


def _zip(h: Tensor, a: int) -> Tensor:
    last, first = history_item(h, -1), history_item(h, 0)
    even = torch.arange(last.shape[-1], device=last.device) % 2 == 0
    return torch.where(even, last, first)


def _sub_skip(h: Tensor, a: int) -> Tensor:
    return (history_item(h, -1) - history_item(h, -2)) % a


def _min_skip(h: Tensor, a: int) -> Tensor:
    return torch.minimum(history_item(h, -1), history_item(h, -2))


_DEFAULT_SKILL_TABLE: tuple[tuple[str, SkillFn, str, bool, int], ...] = (
    # name, fn, description, bijective, min_length
    ("reverse", _reverse, "reverse the string", True, 1),
    ("rotate_left", _rotate_left, "rotate left by one position", True, 1),
    ("rotate_right", _rotate_right, "rotate right by one position", True, 1),
    ("shift_up", _shift_up, "caesar shift every symbol up by one (mod A)", True, 1),
    ("shift_down", _shift_down, "caesar shift every symbol down by one (mod A)", True, 1),
    ("complement", _complement, "replace each symbol s by A-1-s", True, 1),
    ("swap_pairs", _swap_pairs, "swap positions 0<->1, 2<->3, ... (odd n: last stays)", True, 1),
    ("swap_halves", _swap_halves, "swap the first and last n//2 symbols", True, 1),
    ("interleave", _interleave, "even positions first, then odd positions", True, 1),
    ("deinterleave", _deinterleave, "inverse of interleave", True, 1),
    ("prefix_sum", _prefix_sum, "running sum mod A", True, 1),
    ("difference", _difference, "difference with the previous symbol mod A (inverse of prefix_sum)", True, 1),
    ("shift_odd", _shift_odd, "shift the symbols at odd positions up by one (mod A)", True, 1),
    ("sort", _sort, "sort ascending", False, 2),
    ("sort_desc", _sort_desc, "sort descending", False, 2),
    ("fill_first", _fill_first, "copy the first symbol everywhere", False, 2),
    ("fill_last", _fill_last, "copy the last symbol everywhere", False, 2),
    ("running_max", _running_max, "running maximum from the left", False, 2),
    ("running_min", _running_min, "running minimum from the left", False, 2),
    ("palindrome", _palindrome, "mirror the first half onto the second half", False, 2),
    ("max_neighbour", _max_neighbour, "max of each symbol and its right neighbour (cyclic)", False, 2),
    ("min_reverse", _min_reverse, "element-wise min of the string and its reverse", False, 2),
    ("zero_odd", _zero_odd, "set the symbols at odd positions to 0", False, 2),
    ("count", _count, "number of other positions holding the same symbol (mod A)", False, 2),
)

_DEFAULT_ROUTING_TABLE: tuple[tuple[str, RoutingFn, str, int, tuple[int, ...]], ...] = (
    # name, fn, description, min_length, the history items it reads
    ("chain", _chain, "x_{l-1}: the previous result", 1, (-1,)),
    ("restart", _restart, "x_0: the prompt's input", 1, (0,)),
    ("skip", _skip, "x_{l-2}: the result before the previous one", 1, (-2,)),
    ("reuse_first", _reuse_first, "x_1: the first step's result", 1, (1,)),
    ("add_first", _add_first, "(x_{l-1} + x_0) mod A, element-wise", 1, (-1, 0)),
    ("max_first", _max_first_merge, "max(x_{l-1}, x_0), element-wise", 1, (-1, 0)),
    ("splice", _splice, "first half of x_{l-1}, second half of x_0", 2, (-1, 0)),
    ("zip", _zip, "even positions from x_{l-1}, odd positions from x_0", 2, (-1, 0)),
    ("sub_skip", _sub_skip, "(x_{l-1} - x_{l-2}) mod A, element-wise", 1, (-1, -2)),
    ("min_skip", _min_skip, "min(x_{l-1}, x_{l-2}), element-wise", 1, (-1, -2)),
)

# the default library's symbols are fixed by this table's order: S0..S23, R0..R9
with registering_from(BUILT_IN):
    for _i, (_name, _fn, _desc, _bij, _minlen) in enumerate(_DEFAULT_SKILL_TABLE):
        register_skill(_name, _fn, _desc, bijective=_bij, min_length=_minlen, symbol=f"S{_i}")
    for _i, (_rname, _rfn, _rdesc, _rminlen, _reads) in enumerate(_DEFAULT_ROUTING_TABLE):
        register_routing(_rname, _rfn, _rdesc, min_length=_rminlen, symbol=f"R{_i}", reads=_reads)

DEFAULT_SKILLS: tuple[str, ...] = tuple(row[0] for row in _DEFAULT_SKILL_TABLE)
"""The 24 default skills: 13 bijections, 11 many-to-one maps."""

DEFAULT_ROUTINGS: tuple[str, ...] = tuple(row[0] for row in _DEFAULT_ROUTING_TABLE)
"""The 10 default routings: 4 selections and 6 element-wise merges or splices."""
