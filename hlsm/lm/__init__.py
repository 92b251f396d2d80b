"""The transformer side: task format, a small GPT with a KV cache, sampling, SFT, REINFORCE, evaluation.

Modules: :mod:`~hlsm.lm.data` (task format: programs to tokens and generations back),
:mod:`~hlsm.lm.dataset` (data sources, mixtures, batches), :mod:`~hlsm.lm.model` (GPT, RoPE, KV
cache), :mod:`~hlsm.lm.sampling` (generation with log-probs), :mod:`~hlsm.lm.sft_config` and
:mod:`~hlsm.lm.sft` (supervised training), :mod:`~hlsm.lm.rl_config`, :mod:`~hlsm.lm.rollout`,
:mod:`~hlsm.lm.pg` and :mod:`~hlsm.lm.reinforce` (REINFORCE from an SFT checkpoint),
:mod:`~hlsm.lm.stacked` and :mod:`~hlsm.lm.engine` (K models of one shape as one computation: the
step every trainer takes; ``train_sft_many`` and ``train_rl_many`` train K runs as one stack),
:mod:`~hlsm.lm.evaluate`, :mod:`~hlsm.lm.attribution` and :mod:`~hlsm.lm.records` (greedy exact
match per design split, per-step error attribution, saved evaluations), :mod:`~hlsm.lm.presets`,
:mod:`~hlsm.lm.experiment` and :mod:`~hlsm.lm.summary` (experiments over arms and seeds and their
summaries), :mod:`~hlsm.lm.policy` (a checkpoint's model and task), :mod:`~hlsm.lm.checkpoint`,
:mod:`~hlsm.lm.rundir` and :mod:`~hlsm.lm.distributed` (resumable, torchrun-ready runs). The
statistics live in :mod:`hlsm.stats`; ``binomial_se`` is re-exported here.

Nothing here imports Pyro or :mod:`hlsm.infer.model`.
"""

from hlsm.lm.attribution import StepReport, first_departure, read_steps
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
from hlsm.lm.engine import StackedAdamW, sft_step
from hlsm.lm.evaluate import (
    LOW_ENTROPY_SKILLS,
    DesignEvaluation,
    SplitAccuracy,
    checker_verdicts,
    design_splits,
    evaluate_design,
    greedy_exact_match,
)
from hlsm.lm.model import GPT, GPTConfig, KVCache
from hlsm.lm.pg import LossParts, kl_k3, loo_advantages, reinforce_loss, token_logprobs
from hlsm.lm.policy import Policy, evaluate_checkpoint, load_policy, widen_policy
from hlsm.lm.records import EvaluationRecord, compare_evaluations, format_evaluation
from hlsm.lm.reinforce import RLResult, rl_update, train_rl, train_rl_many
from hlsm.lm.rl_config import RLConfig, RLSettings, RLTrainingConfig, resolve_task
from hlsm.lm.rollout import GroupBuffer, Rollout, RolloutError, mixed_groups, sample_groups, sample_groups_stacked
from hlsm.lm.runconfig import RunConfig
from hlsm.lm.rundir import TrainingError
from hlsm.lm.sampling import Generation, GenerationError, generate, generate_stacked
from hlsm.lm.sft import SFTResult, lm_loss, lr_factor, train_sft, train_sft_many
from hlsm.lm.sft_config import ModelConfig, SFTConfig, TrainingConfig
from hlsm.lm.stacked import StackedGPT
from hlsm.stats import binomial_se

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "DataError",
    "DesignEvaluation",
    "DistContext",
    "DistributedError",
    "EvaluationRecord",
    "Examples",
    "FormatError",
    "GPT",
    "GPTConfig",
    "Generation",
    "GenerationError",
    "GroupBuffer",
    "KVCache",
    "LOW_ENTROPY_SKILLS",
    "LossParts",
    "ModelConfig",
    "ParsedAnswer",
    "Policy",
    "RLConfig",
    "RLResult",
    "RLSettings",
    "RLTrainingConfig",
    "Rollout",
    "RolloutError",
    "RunConfig",
    "SFTConfig",
    "SFTResult",
    "Source",
    "SourceConfig",
    "SplitAccuracy",
    "StackedAdamW",
    "StackedGPT",
    "StepReport",
    "TaskFormat",
    "TrainingConfig",
    "TrainingError",
    "binomial_se",
    "checker_verdicts",
    "derive_seed",
    "design_splits",
    "encode_example",
    "encode_prompt",
    "evaluate_checkpoint",
    "evaluate_design",
    "first_departure",
    "format_evaluation",
    "generate",
    "generate_stacked",
    "greedy_exact_match",
    "init_distributed",
    "kl_k3",
    "lm_loss",
    "load_checkpoint",
    "load_policy",
    "loo_advantages",
    "lr_factor",
    "make_tokenizer",
    "max_sequence_length",
    "mixed_groups",
    "compare_evaluations",
    "parse_generation",
    "read_steps",
    "reinforce_loss",
    "resolve_device",
    "resolve_source",
    "resolve_task",
    "rl_update",
    "sample_examples",
    "sample_groups",
    "sample_groups_stacked",
    "save_checkpoint",
    "sft_step",
    "token_logprobs",
    "train_rl",
    "train_rl_many",
    "train_sft",
    "train_sft_many",
    "widen_policy",
]
