"""The Bayesian view: the Pyro HLSM, its exact likelihoods, fitting, and what a fit identifies.

Modules: :mod:`~hlsm.infer.model` (the Pyro model; samples, or scores with enumerated selections),
:mod:`~hlsm.infer.exact` (brute-force likelihoods, the oracle on tiny instances),
:mod:`~hlsm.infer.likelihood` (the same likelihood as a differentiable tensor contraction),
:mod:`~hlsm.infer.fitting` (MAP of bindings and tables with restarts; fast or Pyro SVI objective) and
:mod:`~hlsm.infer.fitstate` (its checkpoints), :mod:`~hlsm.infer.selections` (MAP selections per
step), :mod:`~hlsm.infer.predictive` (posterior predictive answers), :mod:`~hlsm.infer.nuts` (NUTS
gold standard, ArviZ export), :mod:`~hlsm.infer.bayes` (per-candidate view against the exact
checker), :mod:`~hlsm.infer.metrics` (recovery up to relabelling).

Names load on first use; the transformer side (:mod:`hlsm.lm`) never imports this package.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING

from hlsm._lazy import lazy_exports as _lazy_exports

if _TYPE_CHECKING:
    from hlsm.infer.bayes import bayesian_view, compare_with_checker
    from hlsm.infer.fitstate import FitError
    from hlsm.infer.fitting import FitConfig, FitDivergedError, FitResult, fit
    from hlsm.infer.model import HLSMParams, ModelError, hlsm, log_likelihood
    from hlsm.infer.nuts import NUTSConfig, run_nuts
    from hlsm.infer.predictive import answer_distribution
    from hlsm.infer.selections import map_selections

_NAMES = {
    "bayesian_view": "hlsm.infer.bayes",
    "compare_with_checker": "hlsm.infer.bayes",
    "FitError": "hlsm.infer.fitstate",
    "FitConfig": "hlsm.infer.fitting",
    "FitDivergedError": "hlsm.infer.fitting",
    "FitResult": "hlsm.infer.fitting",
    "fit": "hlsm.infer.fitting",
    "HLSMParams": "hlsm.infer.model",
    "ModelError": "hlsm.infer.model",
    "hlsm": "hlsm.infer.model",
    "log_likelihood": "hlsm.infer.model",
    "NUTSConfig": "hlsm.infer.nuts",
    "run_nuts": "hlsm.infer.nuts",
    "answer_distribution": "hlsm.infer.predictive",
    "map_selections": "hlsm.infer.selections",
}
_SUBMODULES = (
    "bayes",
    "exact",
    "fitstate",
    "fitting",
    "likelihood",
    "metrics",
    "model",
    "nuts",
    "predictive",
    "selections",
)
__getattr__, __dir__ = _lazy_exports(__name__, _NAMES, _SUBMODULES)
__all__ = sorted(_NAMES)
