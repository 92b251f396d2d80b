"""The transformer side: task format, a small GPT with a KV cache, sampling, SFT.

Modules: :mod:`~hlsm.lm.data` (task format: programs to tokens and generations back),
:mod:`~hlsm.lm.dataset` (data sources, mixtures, batches), :mod:`~hlsm.lm.model` (GPT, RoPE, KV
cache), :mod:`~hlsm.lm.sampling` (generation with log-probs), :mod:`~hlsm.lm.evaluate` (greedy
exact match), :mod:`~hlsm.lm.sft_config` and :mod:`~hlsm.lm.sft` (training), :mod:`~hlsm.lm.checkpoint`
and :mod:`~hlsm.lm.distributed` (resumable, torchrun-ready runs).

Nothing here imports Pyro or :mod:`hlsm.model`.
"""

from hlsm.lm.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from hlsm.lm.data import (
    FormatError,
    ParsedAnswer,
    TaskFormat,
    encode_example,
    encode_prompt,
    make_tokenizer,
    parse_generation,
)
from hlsm.lm.dataset import (
    DataError,
    Examples,
    Source,
    SourceConfig,
    derive_seed,
    max_sequence_length,
    resolve_source,
    sample_examples,
)
from hlsm.lm.distributed import DistContext, DistributedError, init_distributed, resolve_device
from hlsm.lm.evaluate import SplitAccuracy, greedy_exact_match
from hlsm.lm.model import GPT, GPTConfig, KVCache
from hlsm.lm.sampling import Generation, GenerationError, generate
from hlsm.lm.sft import SFTResult, TrainingError, lm_loss, lr_factor, train_sft
from hlsm.lm.sft_config import ModelConfig, SFTConfig, TrainingConfig

__all__ = [
    "GPT",
    "Checkpoint",
    "CheckpointError",
    "DataError",
    "DistContext",
    "DistributedError",
    "Examples",
    "FormatError",
    "GPTConfig",
    "Generation",
    "GenerationError",
    "KVCache",
    "ModelConfig",
    "ParsedAnswer",
    "SFTConfig",
    "SFTResult",
    "Source",
    "SourceConfig",
    "SplitAccuracy",
    "TaskFormat",
    "TrainingConfig",
    "TrainingError",
    "derive_seed",
    "encode_example",
    "encode_prompt",
    "generate",
    "greedy_exact_match",
    "init_distributed",
    "lm_loss",
    "load_checkpoint",
    "lr_factor",
    "make_tokenizer",
    "max_sequence_length",
    "parse_generation",
    "resolve_device",
    "resolve_source",
    "sample_examples",
    "save_checkpoint",
    "train_sft",
]
