"""The training engine: one optimisation step for ``K`` stacked models (:class:`StackedGPT`).

Every trainer of :mod:`hlsm.lm` steps a stack — one model is a stack of one — so there is one SFT
step (:func:`sft_step`) and one optimiser in the code base, and a batched run of ``K`` models is
the same arithmetic as ``K`` runs alone:

- **loss**: each member's masked cross-entropy divided by its own denominator
  (:func:`stacked_lm_loss`); the stack minimises their sum, whose gradient with respect to member
  ``k``'s weights is member ``k``'s gradient alone (no weight is shared);
- **clipping**: each member's gradient is clipped to its own norm bound (:func:`clip_grad_norms`,
  the computation of :func:`torch.nn.utils.clip_grad_norm_` per member);
- **AdamW** (:class:`StackedAdamW`): the update of :class:`torch.optim.AdamW` (decoupled weight
  decay on weight matrices and the embedding only), elementwise, with a learning rate per member,
  so that members may follow different schedules.

The per-member arithmetic differs from the single model's only in summation order inside
reductions where ``K > 1`` (batched matmuls, per-member norms); with ``K = 1`` the forward and
backward passes are the single model's own kernels (:mod:`hlsm.lm.stacked`).

Optimiser states are saved per member in :meth:`torch.optim.AdamW.state_dict`'s layout (parameter
``i`` of the single model's two AdamW groups), so a member's checkpoint is that of a run alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim.adamw import adamw

from hlsm.lm.stacked import StackedGPT, stacked_param_groups


def _per_member(values: Sequence[float] | Tensor, like: Tensor) -> Tensor:
    """A ``(K, 1, ..., 1)`` float64 tensor broadcasting over ``like`` (``(K, ...)``)."""
    t = torch.as_tensor(values, dtype=torch.float64, device=like.device)
    return t.view(-1, *([1] * (like.dim() - 1)))


class StackedAdamW:
    """AdamW over a :class:`StackedGPT`'s parameters with one learning rate per member.

    The arithmetic is :class:`torch.optim.AdamW`'s (``foreach`` form) applied to each member's
    slice: ``p <- p (1 - lr wd)``; ``m <- lerp(m, g, 1 - b1)``; ``v <- b2 v + (1 - b2) g^2``;
    ``p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``; weight decay on the single
    model's matrices and embedding only (:func:`hlsm.lm.stacked.stacked_param_groups`).

    Parameters
    ----------
    stack
        The models.
    weight_decay
        One value per member (or one for all).
    betas, eps
        Shared by the members.
    """

    def __init__(
        self,
        stack: StackedGPT,
        weight_decay: Sequence[float] | float,
        betas: Sequence[float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.stack = stack
        K = stack.models
        self.weight_decay = [float(weight_decay)] * K if isinstance(weight_decay, (int, float)) else list(weight_decay)
        if len(self.weight_decay) != K:
            raise ValueError(f"{len(self.weight_decay)} weight decays for {K} models")
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        self.groups = stacked_param_groups(stack)
        self.names = [*self.groups["decay"], *self.groups["no_decay"]]  # torch AdamW's parameter order
        self.steps = 0
        self.exp_avg = {n: torch.zeros_like(stack.stacked(n)) for n in self.names}
        self.exp_avg_sq = {n: torch.zeros_like(stack.stacked(n)) for n in self.names}

    def zero_grad(self) -> None:
        for n in self.names:
            self.stack.stacked(n).grad = None

    @torch.no_grad()
    def step(self, lrs: Sequence[float]) -> None:
        """One update, member ``k`` at learning rate ``lrs[k]`` (a parameter without gradient is skipped).

        When every member has the same learning rate and weight decay (seeds of one recipe), the
        stacked tensors go through torch's own multi-tensor AdamW (elementwise, so each member's
        slice gets exactly its own update); otherwise each member's rate is applied in the same
        arithmetic order, one parameter at a time.
        """
        self.steps += 1
        names = [n for n in self.names if self.stack.stacked(n).grad is not None]
        if len(set(lrs)) == 1 and len(set(self.weight_decay)) == 1:
            self._torch_step(names, float(lrs[0]), self.weight_decay[0])
            return
        b1, b2 = self.betas
        bc1, bc2_sqrt = 1 - b1**self.steps, (1 - b2**self.steps) ** 0.5
        decay = set(self.groups["decay"])
        for n in names:
            p = self.stack.stacked(n)
            g, m, v = p.grad, self.exp_avg[n], self.exp_avg_sq[n]
            assert g is not None
            if n in decay:
                p.mul_(_per_member([1 - lr * wd for lr, wd in zip(lrs, self.weight_decay, strict=True)], p).to(p.dtype))
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (v.sqrt() / bc2_sqrt).add_(self.eps)
            p.add_(m * _per_member([-lr / bc1 for lr in lrs], p).to(p.dtype) / denom)  # addcdiv: (value m) / denom

    def _torch_step(self, names: list[str], lr: float, weight_decay: float) -> None:
        """:func:`torch.optim.adamw.adamw` (foreach; fused on CUDA) on the stacked tensors, per group."""
        decay = set(self.groups["decay"])
        for group, wd in (
            ([n for n in names if n in decay], weight_decay),
            ([n for n in names if n not in decay], 0.0),
        ):
            if not group:
                continue
            params: list[Tensor] = [self.stack.stacked(n) for n in group]
            grads = [p.grad for p in params if p.grad is not None]
            device = params[0].device
            fused = device.type == "cuda"
            # torch counts each parameter's step itself (incremented before the update)
            steps = [torch.tensor(float(self.steps - 1), device=device if fused else "cpu") for _ in group]
            adamw(
                params, grads, [self.exp_avg[n] for n in group], [self.exp_avg_sq[n] for n in group], [], steps,
                foreach=not fused, fused=fused or None, amsgrad=False, beta1=self.betas[0], beta2=self.betas[1],
                lr=lr, weight_decay=wd, eps=self.eps, maximize=False,
            )  # fmt: skip

    def member_state(self, k: int, lr: float) -> dict[str, Any]:
        """Member ``k``'s state in :meth:`torch.optim.AdamW.state_dict`'s layout (``lr``: its current rate)."""
        step = torch.tensor(float(self.steps))
        state = {
            i: {
                "step": step.clone(),
                "exp_avg": self.exp_avg[n][k].clone(),
                "exp_avg_sq": self.exp_avg_sq[n][k].clone(),
            }
            for i, n in enumerate(self.names)
        }
        n_decay = len(self.groups["decay"])
        common = {"lr": lr, "betas": self.betas, "eps": self.eps, "amsgrad": False, "maximize": False}
        groups = [
            common | {"weight_decay": self.weight_decay[k], "params": list(range(n_decay))},
            common | {"weight_decay": 0.0, "params": list(range(n_decay, len(self.names)))},
        ]
        return {"state": state, "param_groups": groups}

    def load_member_states(self, states: Sequence[dict[str, Any]]) -> None:
        """Restore every member from :meth:`member_state` dicts (or a single AdamW's ``state_dict``)."""
        if len(states) != self.stack.models:
            raise ValueError(f"{len(states)} optimiser states for {self.stack.models} models")
        steps = {int(s["state"][0]["step"]) if s["state"] else 0 for s in states}
        if len(steps) != 1:
            raise ValueError(f"the members were saved at different optimiser steps {sorted(steps)}")
        self.steps = steps.pop()
        for i, n in enumerate(self.names):
            for k, s in enumerate(states):
                if i in s["state"]:
                    self.exp_avg[n][k].copy_(s["state"][i]["exp_avg"])
                    self.exp_avg_sq[n][k].copy_(s["state"][i]["exp_avg_sq"])

    def select(self, stack: StackedGPT, keep: Sequence[int]) -> StackedAdamW:
        """This optimiser's state for ``stack``, the stack of this one's members ``keep``."""
        new = StackedAdamW(stack, [self.weight_decay[k] for k in keep], self.betas, self.eps)
        new.steps = self.steps
        index = torch.tensor(list(keep), device=next(iter(self.exp_avg.values())).device)
        for n in self.names:
            new.exp_avg[n] = self.exp_avg[n].index_select(0, index)
            new.exp_avg_sq[n] = self.exp_avg_sq[n].index_select(0, index)
        return new


def clip_grad_norms(stack: StackedGPT, max_norms: Sequence[float]) -> Tensor:
    """Clip each member's gradient to its own bound; return the ``(K,)`` norms before clipping.

    Member ``k``: ``total = ||(||g_p[k]||)_p||``, gradients scaled by ``min(1, max_norm / (total +
    1e-6))`` — :func:`torch.nn.utils.clip_grad_norm_` on that member alone. ``max_norm = inf`` (or
    0 in a config) does not clip.
    """
    grads = [p.grad for p in stack.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(stack.models)
    if stack.models == 1:  # the single model's own clipping
        limit = max_norms[0] if max_norms[0] > 0 else math.inf
        return torch.nn.utils.clip_grad_norm_([p for p in stack.parameters() if p.grad is not None], limit)[None]
    # each slice's norm on its own (the single model's reduction order), then the norm of those
    norms = [torch.stack([torch.linalg.vector_norm(g[k]) for g in grads]) for k in range(stack.models)]
    total = torch.stack([torch.linalg.vector_norm(n) for n in norms])
    bound = torch.as_tensor([m if m > 0 else math.inf for m in max_norms], dtype=total.dtype, device=total.device)
    coef = torch.clamp((total + 1e-6).reciprocal() * bound, max=1.0)  # clip_grad_norm_'s rounding: 1/x, then times
    for g in grads:
        g.mul_(coef.view(-1, *([1] * (g.dim() - 1))).to(g.dtype))
    return total


def stacked_lm_loss(net: nn.Module, ids: Tensor, loss_mask: Tensor, denominators: Tensor) -> Tensor:
    """Each member's masked next-token cross-entropy over its own denominator: ``(K,)``.

    Parameters
    ----------
    net
        A :class:`StackedGPT` (or its DDP wrapper).
    ids, loss_mask
        ``(K, B, T)`` token ids and bool mask (True on the tokens to predict).
    denominators
        ``(K,)`` the divisor of each member's summed loss (its number of target tokens, or its
        share under torchrun).

    Returns
    -------
    Tensor
        ``(K,)``: ``sum_{b, t >= 1} m CE(logits_{b,t-1}, ids_{b,t}) / denominators[k]``.
    """
    logits = net(ids[:, :, :-1])
    K, B, T, V = logits.shape
    targets, mask = ids[:, :, 1:], loss_mask[:, :, 1:]
    ce = F.cross_entropy(logits.float().reshape(-1, V), targets.reshape(-1), reduction="none").view(K, B * T)
    return (ce * mask.reshape(K, -1)).sum(dim=1) / denominators.to(ce.dtype)


def sft_step(
    net: nn.Module,
    stack: StackedGPT,
    optimizer: StackedAdamW,
    ids: Tensor,
    loss_mask: Tensor,
    denominators: Tensor,
    lrs: Sequence[float],
    max_norms: Sequence[float],
    autocast: Any,
) -> tuple[Tensor, Tensor]:
    """One SFT step of every member: loss, backward, per-member clipping, AdamW at ``lrs``.

    ``net`` is ``stack`` or its DDP wrapper (which averages the gradients over ranks in backward).
    Returns the ``(K,)`` losses (detached) and gradient norms before clipping.
    """
    with autocast:
        losses = stacked_lm_loss(net, ids, loss_mask, denominators)
    optimizer.zero_grad()
    losses.sum().backward()
    norms = clip_grad_norms(stack, max_norms)
    optimizer.step(lrs)
    return losses.detach(), norms
