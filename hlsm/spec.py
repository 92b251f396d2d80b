"""The one typed object that holds an instance's sizes: alphabet, length and module library."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from torch import Tensor

from hlsm.errors import HLSMError, SlipWarning
from hlsm.modules import (
    DEFAULT_ROUTINGS,
    DEFAULT_SKILLS,
    ModuleError,
    Routing,
    Skill,
    check_module,
    get_routing,
    get_skill,
)

LETTERS = "abcdefghijklmnopqrstuvwxyz"


class SpecError(HLSMError):
    """A spec whose sizes or module names are invalid."""


@dataclass(frozen=True)
class Spec:
    """Sizes and library of an HLSM instance.

    Parameters
    ----------
    alphabet : int
        ``A``, the number of symbols; states are rendered with the letters ``a, b, ...``
        (``2 <= A <= 26``).
    length : int
        ``n``, the fixed string length; the state space ``X`` has ``A**n`` elements.
    skills, routings : tuple of str
        Registry names of the skills and routings in the library, in index order. Skill index
        ``k`` is what the Pyro model's selection ``K_l`` takes; routing index ``m`` likewise.

    Examples
    --------
    >>> Spec()                     # default library: A=8, n=6, 24 skills, 10 routings
    >>> Spec.tiny()                # A=3, n=3 with the default library
    """

    alphabet: int = 8
    length: int = 6
    skills: tuple[str, ...] = DEFAULT_SKILLS
    routings: tuple[str, ...] = DEFAULT_ROUTINGS
    _modules: tuple[tuple[Skill, ...], tuple[Routing, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name, value in (("alphabet", self.alphabet), ("length", self.length)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise SpecError(f"{name} must be an integer, got {value!r}")
        if not 2 <= self.alphabet <= len(LETTERS):
            raise SpecError(f"alphabet must be between 2 and 26 (states are letters), got {self.alphabet}")
        if self.length < 1:
            raise SpecError(f"length must be at least 1, got {self.length}")
        object.__setattr__(self, "skills", tuple(self.skills))
        object.__setattr__(self, "routings", tuple(self.routings))
        if not self.skills:
            raise SpecError("the library needs at least one skill")
        if not self.routings:
            raise SpecError("the library needs at least one routing")
        for names, kind in ((self.skills, "skill"), (self.routings, "routing")):
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise SpecError(f"{kind} names repeat in the library: {', '.join(dup)}")
        try:
            skill_objs = tuple(get_skill(n) for n in self.skills)
            routing_objs = tuple(get_routing(n) for n in self.routings)
        except ModuleError as err:
            raise SpecError(str(err)) from None
        modules: tuple[Skill | Routing, ...] = (*skill_objs, *routing_objs)
        for module in modules:
            if not module.supports(self.alphabet, self.length):
                raise SpecError(
                    f"{module.kind} '{module.name}' needs A >= {module.min_alphabet} and "
                    f"n >= {module.min_length}, but the spec has A={self.alphabet}, n={self.length}; "
                    f"raise A or n, or drop '{module.name}' from the library"
                )
            if module.name not in DEFAULT_SKILLS and module.name not in DEFAULT_ROUTINGS:
                try:  # a custom module is checked at the size it is used at (it may hold only elsewhere)
                    check_module(module, self.alphabet, self.length)
                except ModuleError as err:
                    raise SpecError(str(err)) from None
        custom = [i for i, k in enumerate(skill_objs) if k.name not in DEFAULT_SKILLS]
        if custom:
            self._warn_equal_skills(skill_objs, custom)
        object.__setattr__(self, "_modules", (skill_objs, routing_objs))

    def _warn_equal_skills(self, skills: tuple[Skill, ...], custom: list[int]) -> None:
        """A custom skill equal to another skill of the library on this spec's states is probably a
        slip (two symbols for one module, which no data can tell apart): a :class:`SlipWarning` names
        both. Checked on every state up to 4,096 of them, else on 4,096 random ones."""
        size = self.num_states
        if size <= 4096:
            x = self.all_states()
        else:
            x = torch.randint(self.alphabet, (4096, self.length), generator=torch.Generator().manual_seed(0))
        outputs = [k(x.clone(), self.alphabet) for k in skills]
        for i in custom:
            for j, other in enumerate(skills):
                if j != i and torch.equal(outputs[i], outputs[j]):
                    where = "every state" if size <= 4096 else "4,096 random states"
                    warnings.warn(
                        f"skill '{skills[i].name}' ({skills[i].origin}) equals '{other.name}' on {where} of "
                        f"A={self.alphabet}, n={self.length}: two symbols for one module, which no data can "
                        f"tell apart; drop one of them unless that is the point",
                        SlipWarning,
                        stacklevel=4,
                    )
                    return

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled by module names: the receiving process resolves them in its own registry (a worker
        that loaded the same plugins knows their modules; their functions need not be picklable)."""
        return (type(self), (self.alphabet, self.length, self.skills, self.routings))

    @classmethod
    def tiny(cls, **overrides: Any) -> Spec:
        """The tiny instance ``A = 3, n = 3`` (``|X| = 27``) used for exact checks."""
        return cls(**{"alphabet": 3, "length": 3, **overrides})

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Spec:
        """Build from a config mapping, rejecting unknown keys with a clear message."""
        allowed = {"alphabet", "length", "skills", "routings"}
        unknown = sorted(set(raw) - allowed)
        if unknown:
            raise SpecError(f"unknown spec key(s) {unknown}; allowed keys are {sorted(allowed)}")
        for key in ("skills", "routings"):
            if key in raw and not (isinstance(raw[key], (list, tuple)) and all(isinstance(v, str) for v in raw[key])):
                raise SpecError(f"spec key '{key}' must be a list of module names, got {raw[key]!r}")
        return cls(**raw)

    def to_dict(self) -> dict[str, Any]:
        return {
            "alphabet": self.alphabet,
            "length": self.length,
            "skills": list(self.skills),
            "routings": list(self.routings),
        }

    # -- sizes -----------------------------------------------------------------------------

    @property
    def num_skills(self) -> int:
        return len(self.skills)

    @property
    def num_routings(self) -> int:
        return len(self.routings)

    @property
    def num_states(self) -> int:
        """``|X| = A**n``."""
        return int(self.alphabet) ** int(self.length)

    @property
    def skill_modules(self) -> tuple[Skill, ...]:
        return self._modules[0]

    @property
    def routing_modules(self) -> tuple[Routing, ...]:
        return self._modules[1]

    @cached_property
    def skill_symbols(self) -> tuple[str, ...]:
        return tuple(m.symbol for m in self.skill_modules)

    @cached_property
    def routing_symbols(self) -> tuple[str, ...]:
        return tuple(m.symbol for m in self.routing_modules)

    # -- states ----------------------------------------------------------------------------

    def encode(self, states: Tensor) -> Tensor:
        """``(..., n)`` symbol tensor -> ``(...)`` integer codes in ``[0, A**n)`` (first symbol most significant)."""
        weights = self.alphabet ** torch.arange(self.length - 1, -1, -1, device=states.device)
        return (states * weights).sum(-1)

    def decode(self, codes: Tensor) -> Tensor:
        """``(...)`` integer codes -> ``(..., n)`` symbol tensor; inverse of :meth:`encode`."""
        weights = self.alphabet ** torch.arange(self.length - 1, -1, -1, device=codes.device)
        return (codes.unsqueeze(-1) // weights) % self.alphabet

    def all_states(self) -> Tensor:
        """Every state of ``X`` as a ``(A**n, n)`` tensor, in code order."""
        return self.decode(torch.arange(self.num_states))

    def render_state(self, state: Tensor | Sequence[int]) -> str:
        """A state as letters, e.g. ``[0, 2, 1] -> 'acb'``."""
        values = state.tolist() if isinstance(state, Tensor) else list(state)
        return "".join(LETTERS[v] for v in values)

    def parse_state(self, text: str) -> list[int]:
        """Letters -> symbol list; raises :class:`SpecError` on a wrong length or letter."""
        if len(text) != self.length:
            raise SpecError(f"state '{text}' has length {len(text)}, expected n={self.length}")
        values = [LETTERS.find(c) for c in text]
        bad = [c for c, v in zip(text, values, strict=True) if not 0 <= v < self.alphabet]
        if bad:
            raise SpecError(
                f"state '{text}' uses letter(s) {''.join(bad)!r} outside the alphabet "
                f"'{LETTERS[: self.alphabet]}' (A={self.alphabet})"
            )
        return values

    # -- module application ----------------------------------------------------------------

    def apply_skill(self, k: int, x: Tensor) -> Tensor:
        """Skill ``k`` on a ``(batch, n)`` tensor."""
        return self.skill_modules[k](x, self.alphabet)

    def apply_routing(self, m: int, history: Tensor) -> Tensor:
        """Routing ``m`` on a ``(batch, l, n)`` history."""
        return self.routing_modules[m](history, self.alphabet)
