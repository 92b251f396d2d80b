"""The horizon ``L*``: the history lengths on which routings are compared as maps.

Whether a routing symbol is identified depends on which routings count as "the same map", and two
routings can agree on short histories and differ on longer ones (``chain`` and ``reuse_first`` agree
on every history of length 2). So identification is only a function of the data once the horizon
is fixed (``theory/identifiability.md``, section 1): ``L*`` is given by the question — the caller,
or by default ``max(DEFAULT_HORIZON, deepest candidate)`` — and never by the data. Data deeper than
``L*`` are refused: their constraints would separate routings that the horizon calls equal. The
checkers, the oracle and the claims code all resolve the horizon here.
"""

from __future__ import annotations

from collections.abc import Iterable

from hlsm.errors import HLSMError

DEFAULT_HORIZON = 3
"""``L*`` when the caller names none and no candidate is deeper: every routing of the default
library differs from every other on some history of length at most 3."""


class HorizonError(HLSMError):
    """A horizon shorter than a program of the data or of the candidates."""


def resolve_horizon(candidate_depths: Iterable[int], data_depths: Iterable[int], horizon: int | None = None) -> int:
    """``L*``: ``horizon`` if given, else ``max(DEFAULT_HORIZON, deepest candidate)``.

    Raises
    ------
    HorizonError
        When a candidate or a data program is deeper than ``L*`` (the message names the fix).
    """
    deepest_candidate = max(candidate_depths, default=0)
    deepest_data = max(data_depths, default=0)
    resolved = max(DEFAULT_HORIZON, deepest_candidate) if horizon is None else horizon
    if resolved < 1:
        raise HorizonError(f"the horizon must be at least 1, got {resolved}")
    if deepest_candidate > resolved:
        raise HorizonError(
            f"a candidate program has depth {deepest_candidate} but the horizon is {resolved}; "
            f"set the horizon to at least {deepest_candidate}"
        )
    if deepest_data > resolved:
        raise HorizonError(
            f"the data hold a program of depth {deepest_data} but the horizon is {resolved}; set the horizon "
            f"(`horizon=` or `[candidates] horizon`) to at least {deepest_data}, the same for every data set compared"
        )
    return resolved
