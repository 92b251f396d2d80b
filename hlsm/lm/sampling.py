"""Autoregressive generation with a KV cache, and the no-cache reference path.

:func:`generate` continues a batch of equal-length prompts for ``max_new_tokens`` steps. Each step
draws token ``y_t`` from ``pi_tau(. | prefix) = softmax(logits / tau)`` (or takes its argmax when
``greedy``) and records ``log pi_tau(y_t | prefix)``. With ``tau = 1`` that is the model's own
log-probability, the quantity a policy gradient needs; with ``tau != 1`` it is the log-probability
under the tempered sampling distribution actually used (recompute the model's with a forward pass
if you need both). A sequence stops at its first EOS: later positions hold ``pad_id``, log-prob 0
and mask False.

The cache path runs the prompt once and then one position per step; the reference path
(``use_cache=False``) recomputes the whole sequence every step. Both give the same logits up to
floating-point rounding (tested at float64), hence the same greedy tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from hlsm.errors import HLSMError
from hlsm.lm.model import GPT
from hlsm.lm.stacked import SingleStack, StackedGPT, as_stack


class GenerationError(HLSMError):
    """Prompts or settings that :func:`generate` cannot run (ragged prompts, too long, bad temperature)."""


@dataclass(frozen=True)
class Generation:
    """The output of :func:`generate` for ``B`` prompts of length ``P`` and ``N = max_new_tokens``.

    Attributes
    ----------
    tokens : Tensor
        ``(B, P + N)`` long: prompt then generated tokens (``pad_id`` after a sequence's EOS).
    logprobs : Tensor
        ``(B, N)`` float32: ``log pi_tau(y_t | prefix)`` of each generated token; 0 where masked.
    mask : Tensor
        ``(B, N)`` bool: True for generated tokens up to and including the first EOS.
    lengths : Tensor
        ``(B,)`` long: generated tokens per sequence, EOS included (``mask.sum(1)``).
    finished : Tensor
        ``(B,)`` bool: whether the sequence emitted EOS within the budget.
    prompt_len : int
        ``P``.
    """

    tokens: Tensor
    logprobs: Tensor
    mask: Tensor
    lengths: Tensor
    finished: Tensor
    prompt_len: int

    @property
    def new_tokens(self) -> Tensor:
        """``(B, N)`` the generated part of :attr:`tokens`."""
        return self.tokens[:, self.prompt_len :]


def as_prompt_batch(prompts: Tensor | Sequence[Sequence[int]], device: torch.device | None = None) -> Tensor:
    """Stack prompts into a ``(B, P)`` long tensor; all prompts must have the same length.

    Raises
    ------
    GenerationError
        If the prompts have different lengths (group them by length, or use the fixed-width format
        ``TaskFormat(slots=W)`` in which every prompt has the same length).
    """
    if isinstance(prompts, Tensor):
        if prompts.dim() != 2 or prompts.dtype != torch.long:
            raise GenerationError(f"prompts must be a (B, P) long tensor, got shape {tuple(prompts.shape)}")
        return prompts if device is None else prompts.to(device)
    lengths = sorted({len(p) for p in prompts})
    if len(lengths) != 1:
        raise GenerationError(
            f"prompts in one call must have the same length, got lengths {lengths}; group them by length or use "
            "the fixed-width program format (TaskFormat(slots=W)), whose prompts all have the same length"
        )
    return torch.tensor([list(p) for p in prompts], dtype=torch.long, device=device)


def generate(
    model: GPT,
    prompts: Tensor | Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    eos_id: int,
    temperature: float = 1.0,
    greedy: bool = False,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    pad_id: int | None = None,
    repeats: int = 1,
) -> Generation:
    """Continue ``(B, P)`` prompts by up to ``max_new_tokens`` tokens each (``repeats`` times each).

    Parameters
    ----------
    model
        Run in eval mode (restored afterwards) without gradients, on the prompts' device.
    prompts
        ``(B, P)`` long token ids, or a list of equal-length id lists.
    eos_id
        End-of-sequence token; a sequence is finished after it.
    temperature
        ``tau > 0``: tokens are drawn from ``softmax(logits / tau)``; the returned log-probs are
        under that distribution (module docstring).
    greedy
        Take the argmax instead of sampling (log-probs still under ``softmax(logits / tau)``).
    generator
        Source of randomness for sampling (on the model's device).
    use_cache
        KV-cache decoding (True) or recompute the full sequence each step (the reference).
    pad_id
        Token written after EOS (default ``eos_id``).
    repeats
        Continue every prompt this many times: the rows of the result are prompt 0's ``repeats``
        continuations, then prompt 1's, ... (as for ``prompts.repeat_interleave(repeats, 0)``). With
        the KV cache the prompts are run through the model once and their cache and last logits
        copied, instead of once per continuation (a group of RL traces shares its prompt).

    Returns
    -------
    Generation
        Tokens ``(B, P + max_new_tokens)`` and per-token log-probs and mask ``(B, max_new_tokens)``.
    """
    device = next(model.parameters()).device
    out = generate_stacked(
        model,
        as_prompt_batch(prompts, device).unsqueeze(0),
        max_new_tokens,
        eos_id=eos_id,
        temperature=temperature,
        greedy=greedy,
        generators=None if generator is None else [generator],
        use_cache=use_cache,
        pad_id=pad_id,
        repeats=repeats,
    )
    return out[0]


def generate_stacked(
    model: StackedGPT | GPT | SingleStack,
    prompts: Tensor,
    max_new_tokens: int,
    *,
    eos_id: int,
    temperature: float = 1.0,
    greedy: bool = False,
    generators: Sequence[torch.Generator | None] | None = None,
    use_cache: bool = True,
    pad_id: int | None = None,
    repeats: int = 1,
    rows: Sequence[int] | None = None,
    budgets: Sequence[int] | None = None,
) -> list[Generation]:
    """:func:`generate` for every member of a stack at once: one decode loop, one forward per token.

    Parameters
    ----------
    model
        A :class:`StackedGPT` of ``K`` models (a :class:`GPT` is a stack of one).
    prompts
        ``(K, B, P)`` long: member ``k`` continues ``prompts[k]``.
    generators
        One per member (or None): member ``k`` draws its tokens from ``generators[k]`` alone, in
        the order its run alone would, so that its samples are those of :func:`generate`.
    rows
        Member ``k``'s prompts are its first ``rows[k]`` (default all ``B``); the others pad the
        stack to one shape and are continued greedily, drawing nothing from the generator.
    budgets
        Member ``k`` generates at most ``budgets[k] <= max_new_tokens`` tokens (later positions: pad,
        mask False); it stops drawing when its budget is spent or all its rows are finished, as
        :func:`generate` alone would.

    Returns
    -------
    list of Generation
        One per member, as :func:`generate` returns it.
    """
    stack = as_stack(model)
    if max_new_tokens < 1:
        raise GenerationError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if not temperature > 0:
        raise GenerationError(f"temperature must be positive, got {temperature}")
    if repeats < 1:
        raise GenerationError(f"repeats must be at least 1, got {repeats}")
    if prompts.dim() != 3 or prompts.dtype != torch.long or prompts.shape[0] != stack.models:
        raise GenerationError(
            f"prompts must be a ({stack.models}, B, P) long tensor for a stack of {stack.models}, "
            f"got shape {tuple(prompts.shape)}"
        )
    K = stack.models
    gens = [None] * K if generators is None else list(generators)
    real = [prompts.shape[1]] * K if rows is None else [int(r) for r in rows]
    limits = [max_new_tokens] * K if budgets is None else [min(int(b), max_new_tokens) for b in budgets]
    if len(gens) != K or len(real) != K or len(limits) != K:
        raise GenerationError(f"generators, rows and budgets must have one entry per model ({K})")
    device = next(stack.parameters()).device
    prompt = prompts.to(device)
    if repeats > 1 and not use_cache:
        prompt, real, repeats = prompt.repeat_interleave(repeats, dim=1), [r * repeats for r in real], 1
    unique = prompt
    prompt = prompt.repeat_interleave(repeats, dim=1) if repeats > 1 else prompt
    _, B, P = prompt.shape
    if P < 1:
        raise GenerationError("prompts must hold at least one token")
    total = P + max_new_tokens
    if total > stack.config.max_len:
        raise GenerationError(
            f"prompt ({P}) + max_new_tokens ({max_new_tokens}) = {total} exceeds the model's max_len="
            f"{stack.config.max_len}"
        )
    pad = eos_id if pad_id is None else pad_id
    tokens = torch.full((K, B, total), pad, dtype=torch.long, device=device)
    tokens[:, :, :P] = prompt
    logprobs = torch.zeros((K, B, max_new_tokens), dtype=torch.float32, device=device)
    mask = torch.zeros((K, B, max_new_tokens), dtype=torch.bool, device=device)
    done = torch.zeros((K, B), dtype=torch.bool, device=device)
    was_training = stack.training
    stack.eval()
    try:
        with torch.no_grad():
            cache = stack.new_cache(total) if use_cache else None
            logits = stack(unique, cache)[:, :, -1]
            if repeats > 1 and cache is not None:
                cache.repeat_interleave(repeats)
                logits = logits.repeat_interleave(repeats, dim=1)
            padding = torch.arange(B, device=device)[None, :] >= torch.tensor(real, device=device)[:, None] * repeats
            finished = [False] * K  # member k's real rows all done (one host sync per token for all members)
            limit = torch.tensor(limits, device=device)
            for t in range(max_new_tokens):
                over = limit <= t
                logp = torch.log_softmax(logits.float() / temperature, dim=-1)
                token = logp.argmax(dim=-1)
                if not greedy:
                    probs = logp.exp()
                    for k in range(K):
                        n = real[k] * repeats
                        if n and t < limits[k] and not finished[k]:  # as the member alone draws
                            token[k, :n] = torch.multinomial(probs[k, :n], 1, generator=gens[k]).squeeze(1)
                live = ~done & ~over[:, None]
                logprobs[:, :, t] = torch.where(live, logp.gather(2, token[:, :, None]).squeeze(2), 0.0)
                mask[:, :, t] = live
                tokens[:, :, P + t] = torch.where(live, token, pad)
                done = done | (live & (token == eos_id))
                finished = (done | padding).all(dim=1).tolist()
                if t + 1 == max_new_tokens or all(t + 1 >= limits[k] or finished[k] for k in range(K)):
                    break
                if cache is not None:
                    logits = stack(tokens[:, :, P + t : P + t + 1], cache)[:, :, -1]
                else:
                    logits = stack(tokens[:, :, : P + t + 1])[:, :, -1]
    finally:
        stack.train(was_training)
    out = []
    for k in range(K):
        n, width = real[k] * repeats, limits[k]
        toks, lp, m = tokens[k, :n, : P + width], logprobs[k, :n, :width], mask[k, :n, :width]
        out.append(Generation(toks, lp, m, m.sum(1), done[k, :n], P))
    return out
