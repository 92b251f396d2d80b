"""The REINFORCE estimator: leave-one-out advantages, the k3 KL estimate, the loss of one update.

For a prompt with ``G`` sampled traces ``y_1 .. y_G`` and rewards ``r_i``, the leave-one-out
advantage is ``A_i = r_i - mean_{j != i} r_j`` (:func:`loo_advantages`). Because the baseline of
trace ``i`` does not depend on ``y_i``,

    E[ sum_i A_i grad log pi(y_i) ] = G grad E[r],

so ``(1/G) sum_i A_i grad log pi(y_i)`` is an unbiased estimate of the gradient of the expected
reward, with lower variance than the plain ``r_i grad log pi(y_i)`` (tested against the exact
gradient of a policy small enough to enumerate, ``tests/lm/test_lm_rl.py``).

The KL penalty to the frozen reference (SFT) policy uses Schulman's *k3* estimator per sampled
token, ``k3 = exp(d) - d - 1`` with ``d = log pi_ref(y_t) - log pi(y_t)`` (:func:`kl_k3`): it is
non-negative, zero where the policies agree, and its expectation under ``pi`` is ``KL(pi || pi_ref)``.
Its *gradient* as the loss uses it (the samples held fixed, ``k3`` differentiated through
``log pi(y_t)`` only) is not that KL's gradient: ``grad k3 = (1 - pi_ref / pi) grad log pi``, whose
expectation under ``pi`` is ``sum_y (pi - pi_ref) grad log pi = -sum_y pi_ref grad log pi``, the
gradient of the *reverse* divergence ``KL(pi_ref || pi)`` at each sampled prefix. So the penalty pulls
``pi`` toward covering ``pi_ref``'s mass (the direction of SFT's cross-entropy on the reference's
own samples), while the logged value ``kl`` estimates ``KL(pi || pi_ref)``. Both are zero, with zero
gradient, at ``pi = pi_ref``, and their gradients agree to first order near it; the test of both directions is
``test_k3_gradient_is_that_of_the_reverse_kl`` in ``tests/lm/test_lm_rl.py``. The same holds of
the k3 penalty in other RL libraries that add it to the loss (GRPO's).

The loss of one update (:func:`reinforce_loss`), over ``B`` traces with generated-token mask ``m``::

    loss = (1 / D) sum_b [ -A_b sum_t m_bt log pi(y_bt) + beta sum_t m_bt k3_bt ]

**Normalisation: by traces.** ``D`` is the number of traces in the update (the mixed groups times
``G``), not the number of tokens: each trace's summed log-probability is its sequence
log-probability, so the policy term is exactly the per-group estimator above averaged over groups,
and the KL term is the average per-trace (sequence-level) KL estimate. Under torchrun every rank
passes the global ``D`` and the gradients are summed across ranks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from hlsm.lm.stacked import as_stack


def loo_advantages(rewards: Tensor) -> Tensor:
    """Leave-one-out advantages ``A_i = r_i - (sum_j r_j - r_i) / (G - 1)``.

    Parameters
    ----------
    rewards
        ``(M, G)`` rewards of ``M`` groups of ``G >= 2`` traces.

    Returns
    -------
    Tensor
        ``(M, G)``; zero everywhere in a group whose rewards are all equal.
    """
    G = rewards.shape[-1]
    if G < 2:
        raise ValueError(f"the leave-one-out baseline needs groups of at least 2 traces, got {G}")
    total = rewards.sum(dim=-1, keepdim=True)
    return rewards - (total - rewards) / (G - 1)


def kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Per-token k3 estimate ``exp(d) - d - 1``, ``d = ref_logp - logp`` (elementwise, any shape).

    Its value estimates ``KL(pi || pi_ref)``; its gradient through ``logp`` estimates the gradient of
    ``KL(pi_ref || pi)`` (module docstring)."""
    d = ref_logp - logp
    return torch.expm1(d) - d


def token_logprobs(model: Any, tokens: Tensor, prompt_len: int, temperature: float = 1.0) -> tuple[Tensor, Tensor]:
    """Log-probabilities and entropies of the generated tokens under ``softmax(logits / tau)``.

    Parameters
    ----------
    model
        A :class:`GPT` with ``(B, P + N)`` tokens, or a stack (:class:`hlsm.lm.stacked.StackedGPT`)
        with ``(K, B, P + N)``.
    tokens
        Prompt then generated tokens.
    prompt_len
        ``P``.

    Returns
    -------
    logp : Tensor
        ``(..., B, N)`` float32 ``log pi(y_t | y_<t)`` of each generated token (with gradient).
    entropy : Tensor
        ``(..., B, N)`` float32 entropy of ``pi(. | y_<t)`` at each generated position (no gradient).
    """
    logits = model(tokens[..., :-1])[..., prompt_len - 1 :, :].float() / temperature
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, tokens[..., prompt_len:, None]).squeeze(-1)
    with torch.no_grad():
        entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy


@dataclass(frozen=True)
class LossParts:
    """Sums over the update's traces, for logging (plain floats).

    ``pg``: ``sum_b -A_b log pi(y_b)``; ``kl``: ``sum_bt m k3``; ``entropy``: ``sum_bt m H``;
    ``tokens``: ``sum_bt m``; ``traces``: ``B``.
    """

    pg: float
    kl: float
    entropy: float
    tokens: float
    traces: float


def reinforce_loss(
    model: nn.Module,
    tokens: Tensor,
    prompt_len: int,
    mask: Tensor,
    advantages: Tensor,
    *,
    ref_model: nn.Module | None = None,
    kl_coef: float = 0.0,
    temperature: float = 1.0,
    denominator: float | None = None,
) -> tuple[Tensor, LossParts]:
    """The loss of one update (module docstring); its gradient is minus the policy-gradient estimate.

    Parameters
    ----------
    model
        The policy (gradients flow into it).
    tokens, prompt_len, mask
        ``(B, P + N)`` sampled traces after their prompts, ``P``, and the ``(B, N)`` bool mask of
        generated tokens (True up to and including EOS).
    advantages
        ``(B,)`` one advantage per trace (e.g. :func:`loo_advantages` flattened group-major).
    ref_model
        The frozen reference policy for the KL term (evaluated without gradient); None: no KL
        term, and ``LossParts.kl`` is 0.
    kl_coef
        ``beta``.
    denominator
        ``D``; default ``B``.

    Returns
    -------
    loss : Tensor
        Scalar.
    parts : LossParts
    """
    D = float(tokens.shape[0]) if denominator is None else float(denominator)
    ref = None if ref_model is None else as_stack(ref_model)
    losses, parts = reinforce_losses(
        as_stack(model), tokens[None], prompt_len, mask[None], advantages[None], ref_model=ref,
        kl_coefs=[kl_coef], temperature=temperature, denominators=[D],
    )  # fmt: skip
    return losses[0], parts[0]


def reinforce_losses(
    model: Any,
    tokens: Tensor,
    prompt_len: int,
    mask: Tensor,
    advantages: Tensor,
    *,
    ref_model: Any | None,
    kl_coefs: Sequence[float],
    temperature: float,
    denominators: Sequence[float],
) -> tuple[Tensor, list[LossParts]]:
    """:func:`reinforce_loss` of every member of a stack: ``(K,)`` losses and one :class:`LossParts` each.

    ``model`` and ``ref_model`` are stacks (:class:`hlsm.lm.stacked.StackedGPT`, or
    :func:`hlsm.lm.stacked.as_stack` of a GPT); ``tokens`` ``(K, B, P + N)``, ``mask`` ``(K, B, N)``,
    ``advantages`` ``(K, B)``; member ``k`` has its own ``kl_coefs[k]`` and ``denominators[k]``. Rows
    with an all-False mask and zero advantage (padding, where members hold different numbers of
    traces) add exactly zero to their member's loss.
    """
    logp, entropy = token_logprobs(model, tokens, prompt_len, temperature)
    m = mask.to(logp.dtype)
    seq_logp = (logp * m).sum(dim=-1)
    pg = -(advantages.to(logp.dtype) * seq_logp).sum(dim=-1)
    kl = torch.zeros_like(pg)
    if ref_model is not None:
        with torch.no_grad():
            ref_logp, _ = token_logprobs(ref_model, tokens, prompt_len, temperature)
        kl = (kl_k3(logp, ref_logp) * m).sum(dim=(-2, -1))
    beta = torch.tensor(list(kl_coefs), dtype=logp.dtype, device=logp.device)
    D = torch.tensor([float(d) for d in denominators], dtype=logp.dtype, device=logp.device)
    losses = (pg + beta * kl) / D
    traces = mask.any(dim=-1).sum(dim=-1)
    sums = torch.stack([pg.detach(), kl.detach(), (entropy * m).sum(dim=(-2, -1)), m.sum(dim=(-2, -1))], dim=1)
    parts = [
        LossParts(pg=row[0], kl=row[1], entropy=row[2], tokens=row[3], traces=float(n))
        for row, n in zip(sums.tolist(), traces.tolist(), strict=True)
    ]
    return losses, parts
