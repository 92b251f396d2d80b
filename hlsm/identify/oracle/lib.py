"""H-lib by exhaustive enumeration: every (not necessarily injective) binding of symbols to library modules.

A hypothesis binds each of the ``K`` skill symbols to one of the ``K`` library skills and each of the
``M`` routing symbols to one of the ``M`` library routings: ``K**K * M**M`` hypotheses, enumerated in
mixed radix (hypothesis ``h``: skill symbol ``s`` binds to digit ``s`` of ``h`` in base ``K``, routing
symbol ``m`` to digit ``m`` of ``h // K**K`` in base ``M``). Each is run on every record of the corpus,
vectorised with numpy over hypotheses and records, and kept iff it reproduces every shown state.
Symbols that appear in no record are enumerated like the others, so they stay free.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hlsm.identify.oracle.base import (
    MAX_LIB_HYPOTHESES,
    DistinctRecord,
    InconsistentDataError,
    LibHypothesis,
    LibraryTables,
    OracleError,
    OracleResult,
    Witness,
    check_candidates,
    distinct_records,
    max_depth_of,
    oracle_horizon,
)
from hlsm.programs import NO_ROUTING, Program
from hlsm.simulate import Corpus
from hlsm.spec import Spec

_CHUNK = 1 << 15  # hypotheses evaluated at once


def _bindings(spec: Spec, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """Hypotheses ``start..stop-1`` in mixed radix: ``(H, K)`` skill and ``(H, M)`` routing bindings."""
    K, M = spec.num_skills, spec.num_routings
    h = np.arange(start, stop, dtype=np.int64)[:, None]
    skills = (h // K ** np.arange(K, dtype=np.int64)) % K
    routings = (h // (K**K * M ** np.arange(M, dtype=np.int64))) % M
    return skills, routings


def _lib_run(
    lib: LibraryTables, program: Program, skills: np.ndarray, routings: np.ndarray, x0: np.ndarray
) -> np.ndarray:
    """States ``x_1..x_L`` of ``program`` under each hypothesis from each ``x_0``: ``(H, T, L)``."""
    start = np.broadcast_to(x0, (skills.shape[0], x0.shape[0]))
    code = start  # code of the history x_0..x_{l-1}
    out = []
    for step, (m, s) in enumerate(program.steps):
        u = start if m == NO_ROUTING else lib.routing[step + 1][routings[:, m][:, None], code]
        x = lib.skill[skills[:, s][:, None], u]
        out.append(x)
        code = code * lib.size + x
    return np.stack(out, axis=-1)


def _lib_consistent(
    spec: Spec, lib: LibraryTables, records: Sequence[DistinctRecord], limit: int
) -> tuple[np.ndarray, np.ndarray]:
    """Every consistent H-lib hypothesis as ``(C, K)`` skill and ``(C, M)`` routing binding arrays."""
    total = spec.num_skills**spec.num_skills * spec.num_routings**spec.num_routings
    if total > limit:
        raise OracleError(
            f"H-lib has K**K * M**M = {total} hypotheses, above the limit {limit}; use a smaller library "
            "(or raise max_hypotheses knowingly)"
        )
    groups: dict[Program, list[DistinctRecord]] = {}
    for r in records:
        groups.setdefault(r.program, []).append(r)
    arrays = [
        (p, np.array([r.x0 for r in rs]), np.array([[-1 if v is None else v for v in r.shown] for r in rs]))
        for p, rs in groups.items()
    ]
    kept_s, kept_r = [], []
    for start in range(0, total, _CHUNK):
        skills, routings = _bindings(spec, start, min(total, start + _CHUNK))
        for program, x0, shown in arrays:  # drop a hypothesis at its first contradicted program
            if len(skills) == 0:
                break
            states = _lib_run(lib, program, skills, routings, x0)
            ok = ((shown < 0) | (states == shown)).all(axis=(1, 2))
            skills, routings = skills[ok], routings[ok]
        kept_s.append(skills)
        kept_r.append(routings)
    return np.concatenate(kept_s), np.concatenate(kept_r)


def lib_version_space(spec: Spec, corpus: Corpus, *, max_hypotheses: int = MAX_LIB_HYPOTHESES) -> list[LibHypothesis]:
    """Every H-lib binding (not necessarily injective) consistent with a noiseless corpus.

    Exhaustive over all ``K**K * M**M`` bindings; refuses with :class:`OracleError` above
    ``max_hypotheses``. The list may be empty (contradictory data).
    """
    records = distinct_records(spec, corpus)
    lib = LibraryTables(spec, max_depth_of(records, []))
    skills, routings = _lib_consistent(spec, lib, records, max_hypotheses)
    return [LibHypothesis(tuple(s), tuple(r)) for s, r in zip(skills.tolist(), routings.tolist(), strict=True)]


def lib_identify(
    spec: Spec,
    corpus: Corpus,
    candidates: Sequence[Program] = (),
    *,
    max_hypotheses: int = MAX_LIB_HYPOTHESES,
    horizon: int | None = None,
) -> OracleResult:
    """What the corpus identifies in H-lib, by enumerating every binding.

    Routings are compared as maps on histories up to the horizon ``L*``
    (:func:`hlsm.identify.horizon.resolve_horizon`; pass the same value to compare corpora).

    Raises
    ------
    InconsistentDataError
        If no binding reproduces the corpus.
    OracleError
        If ``K**K * M**M > max_hypotheses`` or the routing tables would be too large.
    """
    records = distinct_records(spec, corpus)
    cands = check_candidates(spec, candidates)
    lib = LibraryTables(spec, oracle_horizon(records, cands, horizon))
    skills, routings = _lib_consistent(spec, lib, records, max_hypotheses)
    if len(skills) == 0:
        raise InconsistentDataError(
            "no H-lib binding reproduces the corpus: the traces contradict each other or come from "
            "modules outside the library; the oracle needs noiseless (epsilon = 0) traces of this spec"
        )
    skill_ok = tuple(len(np.unique(lib.skill_class[skills[:, s]])) == 1 for s in range(spec.num_skills))
    routing_ok = tuple(len(np.unique(lib.routing_class[routings[:, m]])) == 1 for m in range(spec.num_routings))
    values = tuple(dict(enumerate(lib.skill[skills[0, s]].tolist())) if ok else {} for s, ok in enumerate(skill_ok))
    x0 = np.arange(lib.size)
    answers: dict[Program, tuple[int | None, ...]] = {}
    witnesses: dict[Program, Witness] = {}
    for p in cands:
        reference = _lib_run(lib, p, skills[:1], routings[:1], x0)[0, :, -1]
        agree = np.ones(lib.size, dtype=bool)
        for start in range(0, len(skills), _CHUNK):
            chunk = slice(start, start + _CHUNK)
            answer = _lib_run(lib, p, skills[chunk], routings[chunk], x0)[:, :, -1]
            diff = answer != reference
            if p not in witnesses and diff.any():
                row, col = (int(i[0]) for i in np.nonzero(diff))
                witnesses[p] = Witness(
                    col,
                    (int(reference[col]), int(answer[row, col])),
                    (_lib_hypothesis(skills, routings, 0), _lib_hypothesis(skills, routings, start + row)),
                )
            agree &= ~diff.any(axis=0)
        answers[p] = tuple(int(a) if ok else None for a, ok in zip(reference, agree, strict=True))
    return OracleResult(
        hypothesis_class="lib",
        skill_identified=skill_ok,
        routing_identified=routing_ok,
        identified_domain=tuple(frozenset(v) for v in values),
        identified_values=values,
        generalisation={p: all(a is not None for a in answers[p]) for p in cands},
        answers=answers,
        witnesses=witnesses,
        num_consistent=len(skills),
        consistent_routings=frozenset(map(tuple, np.unique(routings, axis=0).tolist())),
    )


def _lib_hypothesis(skills: np.ndarray, routings: np.ndarray, row: int) -> LibHypothesis:
    return LibHypothesis(tuple(skills[row].tolist()), tuple(routings[row].tolist()))
