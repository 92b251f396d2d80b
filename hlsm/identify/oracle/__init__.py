"""Brute-force identifiability oracle for tiny instances (see :mod:`hlsm.identify.oracle.base`).

>>> corpus = regime_population(spec, [(program, "full") for program in sft] + [(p, "answer") for p in rl])
>>> result = lib_identify(spec, corpus, candidates)      # or tab_identify(...)
>>> result.skill_identified, result.generalisation_set
"""

from hlsm.identify.oracle.base import (
    MAX_HISTORIES,
    MAX_LIB_HYPOTHESES,
    Hypothesis,
    InconsistentDataError,
    LibHypothesis,
    OracleError,
    OracleResult,
    SearchBudgetError,
    TabHypothesis,
    Witness,
    regime_population,
)
from hlsm.identify.oracle.lib import lib_identify, lib_version_space
from hlsm.identify.oracle.tab import TAB_BUDGET, tab_identify

__all__ = [
    "MAX_HISTORIES",
    "MAX_LIB_HYPOTHESES",
    "TAB_BUDGET",
    "Hypothesis",
    "InconsistentDataError",
    "LibHypothesis",
    "OracleError",
    "OracleResult",
    "SearchBudgetError",
    "TabHypothesis",
    "Witness",
    "lib_identify",
    "lib_version_space",
    "regime_population",
    "tab_identify",
]
