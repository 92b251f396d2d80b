"""hlsm: hierarchical latent selection models of reasoning traces.

Simulate trace distributions under controlled supports of module compositions, check which modules
and compositions a support identifies, and test the predictions on a small transformer.
"""

from hlsm.design import Coverage, DesignConfig, DesignError, SupportDesign, coverage, make_design, support_graph
from hlsm.errors import HLSMError
from hlsm.model import HLSMParams, ModelError, hlsm, log_likelihood
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
from hlsm.simulate import Corpus, CorpusError, read_jsonl, summarize, write_jsonl
from hlsm.spec import Spec, SpecError
from hlsm.traces import Tokenizer, Trace, TraceFormatError, exposure_mask, parse, render

__version__ = "0.1.0"

__all__ = [
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
