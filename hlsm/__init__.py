"""hlsm: hierarchical latent selection models of reasoning traces.

Simulate trace distributions under controlled supports of module compositions, check which modules
and compositions a support identifies, and test the predictions on a small transformer.

The Pyro side's names (the model ``hlsm``, ``log_likelihood``, ``HLSMParams``, ``ModelError``; fitting
``fit``, ``FitConfig``, ``FitResult``, ``map_selections``, ``answer_distribution``, ``run_nuts``,
``NUTSConfig``; the Bayesian view ``bayesian_view``, ``compare_with_checker``) are imported on first
use, so that ``import hlsm.lm`` (the transformer side) never loads Pyro.
"""

from typing import TYPE_CHECKING, Any

from hlsm.design import Coverage, DesignConfig, DesignError, SupportDesign, coverage, make_design, support_graph
from hlsm.errors import HLSMError
from hlsm.identify import Identification, identify
from hlsm.modules import (
    DEFAULT_ROUTINGS,
    DEFAULT_SKILLS,
    ModuleError,
    Routing,
    Skill,
    get_routing,
    get_skill,
    register_routing,
    register_skill,
    unregister,
)
from hlsm.programs import NO_ROUTING, Program, ProgramBatch, ProgramError, execute
from hlsm.simulate import Corpus, CorpusError, population_corpus, read_jsonl, summarize, write_jsonl
from hlsm.spec import Spec, SpecError
from hlsm.traces import Tokenizer, Trace, TraceFormatError, exposure_mask, parse, render

if TYPE_CHECKING:
    from hlsm.bayes import bayesian_view, compare_with_checker
    from hlsm.infer import FitConfig, FitResult, fit
    from hlsm.model import HLSMParams, ModelError, hlsm, log_likelihood
    from hlsm.nuts import NUTSConfig, run_nuts
    from hlsm.predictive import answer_distribution
    from hlsm.selections import map_selections

_LAZY = {
    "HLSMParams": "hlsm.model",
    "ModelError": "hlsm.model",
    "hlsm": "hlsm.model",
    "log_likelihood": "hlsm.model",
    "fit": "hlsm.infer",
    "FitConfig": "hlsm.infer",
    "FitResult": "hlsm.infer",
    "bayesian_view": "hlsm.bayes",
    "compare_with_checker": "hlsm.bayes",
    "map_selections": "hlsm.selections",
    "answer_distribution": "hlsm.predictive",
    "run_nuts": "hlsm.nuts",
    "NUTSConfig": "hlsm.nuts",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hlsm' has no attribute '{name}'")


__version__ = "0.1.0"

__all__ = [
    "fit",
    "FitConfig",
    "FitResult",
    "bayesian_view",
    "compare_with_checker",
    "map_selections",
    "answer_distribution",
    "run_nuts",
    "NUTSConfig",
    "Identification",
    "identify",
    "population_corpus",
    "DEFAULT_ROUTINGS",
    "DEFAULT_SKILLS",
    "NO_ROUTING",
    "Corpus",
    "CorpusError",
    "Coverage",
    "DesignConfig",
    "DesignError",
    "HLSMError",
    "HLSMParams",
    "ModelError",
    "ModuleError",
    "Program",
    "ProgramBatch",
    "ProgramError",
    "Routing",
    "Skill",
    "Spec",
    "SpecError",
    "SupportDesign",
    "Tokenizer",
    "Trace",
    "TraceFormatError",
    "coverage",
    "execute",
    "exposure_mask",
    "get_routing",
    "get_skill",
    "hlsm",
    "log_likelihood",
    "make_design",
    "parse",
    "read_jsonl",
    "register_routing",
    "register_skill",
    "render",
    "summarize",
    "support_graph",
    "unregister",
    "write_jsonl",
]
