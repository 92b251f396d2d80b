"""hlsm: hierarchical latent selection models of reasoning traces.

Simulate trace distributions under controlled supports of module compositions, check which modules
and compositions a support identifies, recover them by variational inference, and test the
predictions on a small transformer.

The package is layered (``docs/index.md``): the core modules here (errors, config, runtime, io,
stats, spec, modules, programs, design, traces, simulate), then :mod:`hlsm.identify` (exact
identifiability), :mod:`hlsm.infer` (the Pyro model and fitting) and :mod:`hlsm.lm` (the
transformer), then :mod:`hlsm.app` (the ``hlsm`` command). Every name below is loaded on first use
(PEP 562): ``import hlsm`` imports neither torch nor Pyro, and ``import hlsm.lm`` never loads Pyro.

The main verbs: ``hlsm.simulate(...)`` (a corpus), ``hlsm.identify(...)`` (the exact checker),
``hlsm.fit(...)`` (MAP fit with restarts), ``hlsm.train_sft`` / ``hlsm.train_rl`` /
``hlsm.evaluate_design`` (the transformer). ``hlsm.simulate`` and ``hlsm.identify`` are also the
modules of those names; calling them calls the verb.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING

from hlsm._lazy import lazy_exports as _lazy_exports

if _TYPE_CHECKING:
    from hlsm.config import ConfigError
    from hlsm.design import Coverage, DesignConfig, DesignError, SupportDesign, coverage, make_design
    from hlsm.errors import HLSMError
    from hlsm.identify.checker import Identification
    from hlsm.identify.graph import support_graph
    from hlsm.infer.bayes import bayesian_view, compare_with_checker
    from hlsm.infer.fitting import FitConfig, FitResult, fit
    from hlsm.infer.model import HLSMParams, ModelError, hlsm, log_likelihood
    from hlsm.infer.nuts import NUTSConfig, run_nuts
    from hlsm.infer.predictive import answer_distribution
    from hlsm.infer.selections import map_selections
    from hlsm.lm.evaluate import evaluate_design
    from hlsm.lm.reinforce import train_rl
    from hlsm.lm.sft import train_sft
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

_MODULES = {
    "hlsm.config": ("ConfigError",),
    "hlsm.design": ("Coverage", "DesignConfig", "DesignError", "SupportDesign", "coverage", "make_design"),
    "hlsm.errors": ("HLSMError",),
    "hlsm.identify.checker": ("Identification",),
    "hlsm.identify.graph": ("support_graph",),
    "hlsm.infer.bayes": ("bayesian_view", "compare_with_checker"),
    "hlsm.infer.fitting": ("FitConfig", "FitResult", "fit"),
    "hlsm.infer.model": ("HLSMParams", "ModelError", "hlsm", "log_likelihood"),
    "hlsm.infer.nuts": ("NUTSConfig", "run_nuts"),
    "hlsm.infer.predictive": ("answer_distribution",),
    "hlsm.infer.selections": ("map_selections",),
    "hlsm.lm.evaluate": ("evaluate_design",),
    "hlsm.lm.reinforce": ("train_rl",),
    "hlsm.lm.sft": ("train_sft",),
    "hlsm.modules": (
        "DEFAULT_ROUTINGS",
        "DEFAULT_SKILLS",
        "ModuleError",
        "Routing",
        "Skill",
        "get_routing",
        "get_skill",
        "register_routing",
        "register_skill",
        "unregister",
    ),
    "hlsm.programs": ("NO_ROUTING", "Program", "ProgramBatch", "ProgramError", "execute"),
    "hlsm.simulate": ("Corpus", "CorpusError", "population_corpus", "read_jsonl", "summarize", "write_jsonl"),
    "hlsm.spec": ("Spec", "SpecError"),
    "hlsm.traces": ("Tokenizer", "Trace", "TraceFormatError", "exposure_mask", "parse", "render"),
}
_NAMES = {name: module for module, names in _MODULES.items() for name in names}
_SUBMODULES = (
    "app",
    "config",
    "design",
    "errors",
    "identify",
    "infer",
    "io",
    "lm",
    "modules",
    "programs",
    "runtime",
    "simulate",
    "spec",
    "stats",
    "traces",
)
__getattr__, __dir__ = _lazy_exports(__name__, _NAMES, _SUBMODULES)

__version__ = "0.2.0"
__all__ = sorted(_NAMES) + ["identify", "simulate"]
