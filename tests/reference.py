"""Plain-Python references for the default module library, written from the module descriptions.

Each skill maps one state (a list of ints in ``[0, A)``) to a new list; each routing maps one history
``[x_0, ..., x_{l-1}]`` (a list of states) to the next step's input. Nothing here calls torch or
:mod:`hlsm.modules`: these are the independent oracles the vectorised library is tested against.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import accumulate

State = list[int]
SkillRef = Callable[[State, int], State]
RoutingRef = Callable[[list[State], int], State]


# -- skills ------------------------------------------------------------------------------------


def reverse(x: State, a: int) -> State:
    return x[::-1]


def rotate_left(x: State, a: int) -> State:
    return x[1:] + x[:1]


def rotate_right(x: State, a: int) -> State:
    return x[-1:] + x[:-1]


def shift_up(x: State, a: int) -> State:
    return [(v + 1) % a for v in x]


def shift_down(x: State, a: int) -> State:
    return [(v - 1) % a for v in x]


def complement(x: State, a: int) -> State:
    return [a - 1 - v for v in x]


def swap_pairs(x: State, a: int) -> State:
    y = list(x)
    for i in range(0, len(x) - 1, 2):
        y[i], y[i + 1] = x[i + 1], x[i]
    return y


def swap_halves(x: State, a: int) -> State:
    h = len(x) // 2
    return x[len(x) - h :] + x[h : len(x) - h] + x[:h]


def interleave(x: State, a: int) -> State:
    return x[0::2] + x[1::2]


def deinterleave(x: State, a: int) -> State:
    n = len(x)
    evens = (n + 1) // 2
    y = [0] * n
    y[0::2] = x[:evens]
    y[1::2] = x[evens:]
    return y


def prefix_sum(x: State, a: int) -> State:
    return [s % a for s in accumulate(x)]


def difference(x: State, a: int) -> State:
    return [(v - (x[i - 1] if i > 0 else 0)) % a for i, v in enumerate(x)]


def shift_odd(x: State, a: int) -> State:
    return [(v + 1) % a if i % 2 == 1 else v for i, v in enumerate(x)]


def sort(x: State, a: int) -> State:
    return sorted(x)


def sort_desc(x: State, a: int) -> State:
    return sorted(x, reverse=True)


def fill_first(x: State, a: int) -> State:
    return [x[0]] * len(x)


def fill_last(x: State, a: int) -> State:
    return [x[-1]] * len(x)


def running_max(x: State, a: int) -> State:
    return list(accumulate(x, max))


def running_min(x: State, a: int) -> State:
    return list(accumulate(x, min))


def palindrome(x: State, a: int) -> State:
    first = x[: (len(x) + 1) // 2]
    return first + first[: len(x) // 2][::-1]


def max_neighbour(x: State, a: int) -> State:
    return [max(v, x[(i + 1) % len(x)]) for i, v in enumerate(x)]


def min_reverse(x: State, a: int) -> State:
    return [min(u, v) for u, v in zip(x, x[::-1], strict=True)]


def zero_odd(x: State, a: int) -> State:
    return [0 if i % 2 == 1 else v for i, v in enumerate(x)]


def count(x: State, a: int) -> State:
    return [(x.count(v) - 1) % a for v in x]


SKILLS: dict[str, SkillRef] = {
    f.__name__: f
    for f in (
        reverse,
        rotate_left,
        rotate_right,
        shift_up,
        shift_down,
        complement,
        swap_pairs,
        swap_halves,
        interleave,
        deinterleave,
        prefix_sum,
        difference,
        shift_odd,
        sort,
        sort_desc,
        fill_first,
        fill_last,
        running_max,
        running_min,
        palindrome,
        max_neighbour,
        min_reverse,
        zero_odd,
        count,
    )
}


# -- routings ----------------------------------------------------------------------------------
# Positions that do not exist yet (x_{l-2} or x_1 at step 1) fall back to x_0.


def _last(h: list[State]) -> State:
    return h[-1]


def _first(h: list[State]) -> State:
    return h[0]


def _before_last(h: list[State]) -> State:
    return h[-2] if len(h) >= 2 else h[0]


def _second(h: list[State]) -> State:
    return h[1] if len(h) >= 2 else h[0]


def chain(h: list[State], a: int) -> State:
    return list(_last(h))


def restart(h: list[State], a: int) -> State:
    return list(_first(h))


def skip(h: list[State], a: int) -> State:
    return list(_before_last(h))


def reuse_first(h: list[State], a: int) -> State:
    return list(_second(h))


def add_first(h: list[State], a: int) -> State:
    return [(u + v) % a for u, v in zip(_last(h), _first(h), strict=True)]


def max_first(h: list[State], a: int) -> State:
    return [max(u, v) for u, v in zip(_last(h), _first(h), strict=True)]


def splice(h: list[State], a: int) -> State:
    half = len(h[0]) // 2
    return _last(h)[:half] + _first(h)[half:]


def zip_(h: list[State], a: int) -> State:
    return [u if i % 2 == 0 else v for i, (u, v) in enumerate(zip(_last(h), _first(h), strict=True))]


def sub_skip(h: list[State], a: int) -> State:
    return [(u - v) % a for u, v in zip(_last(h), _before_last(h), strict=True)]


def min_skip(h: list[State], a: int) -> State:
    return [min(u, v) for u, v in zip(_last(h), _before_last(h), strict=True)]


ROUTINGS: dict[str, RoutingRef] = {
    "chain": chain,
    "restart": restart,
    "skip": skip,
    "reuse_first": reuse_first,
    "add_first": add_first,
    "max_first": max_first,
    "splice": splice,
    "zip": zip_,
    "sub_skip": sub_skip,
    "min_skip": min_skip,
}


# -- programs ----------------------------------------------------------------------------------


def run_program(
    skill_names: Sequence[str],
    routing_names: Sequence[str],
    steps: Sequence[tuple[int, int]],
    x0: State,
    alphabet: int,
) -> list[State]:
    """``[x_0, ..., x_L]`` of a program given as ``(routing index, skill index)`` steps.

    A routing index of -1 (an atomic step) feeds ``x_0``.
    """
    states = [list(x0)]
    for m, k in steps:
        u = list(x0) if m < 0 else ROUTINGS[routing_names[m]](states, alphabet)
        states.append(SKILLS[skill_names[k]](u, alphabet))
    return states
