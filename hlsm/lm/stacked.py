"""``K`` transformers of one shape as one computation: every weight carries a leading model dimension.

:class:`StackedGPT` holds ``K`` independent copies of :class:`hlsm.lm.model.GPT` (same
:class:`GPTConfig`, different weights) and runs them together: ``forward(idx)`` takes ``(K, B, T)``
token ids, model ``k`` reading rows ``idx[k]``, and returns ``(K, B, T, V)`` logits, row ``k`` being
exactly what model ``k`` alone computes (up to floating-point summation order; tested at float64
against the single model, ``tests/lm/test_lm_stacked.py``). No operation mixes models: every
product is a batched matmul over the model dimension (``torch.bmm``), LayerNorms apply each model's
own scale and shift, and attention runs once for all ``K * B`` sequences
(:func:`torch.nn.functional.scaled_dot_product_attention` on ``(K B, H, T, d_head)``).

Why: a 0.2M-parameter model cannot fill a CPU core, and on a GPU it is launch-bound; the seeds and
arms of an experiment share every shape, so stacking them turns ``K`` small problems into one large
one (per-op overhead, the per-token decode of RL sampling above all, is paid once for ``K`` models).

A member's weights are its slice ``[k]`` of every stacked parameter, in the layout of the single
model's ``state_dict`` (:meth:`StackedGPT.member_state`, :meth:`StackedGPT.from_states`), so that a
checkpoint written from a stack is the checkpoint of that model alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hlsm.lm.model import GPT, GPTConfig, KVCache, _rope_tables, _rotate, decode_by_hand

# (name in the single model's state_dict, suffix in a block, shape given (d, d_ff)); a stacked
# parameter is named with dots replaced by '__' (nn.Parameter names cannot hold dots)
_BLOCK = (
    ("ln1.weight", lambda d, f: (d,)),
    ("ln1.bias", lambda d, f: (d,)),
    ("attn.qkv.weight", lambda d, f: (3 * d, d)),
    ("attn.proj.weight", lambda d, f: (d, d)),
    ("ln2.weight", lambda d, f: (d,)),
    ("ln2.bias", lambda d, f: (d,)),
    ("fc1.weight", lambda d, f: (f, d)),
    ("fc2.weight", lambda d, f: (d, f)),
)


def gpt_from_state(config: GPTConfig, state: dict[str, Tensor]) -> GPT:
    """A :class:`GPT` holding ``state``, built without drawing from torch's random stream."""
    with torch.random.fork_rng(devices=[]):
        model = GPT(config)
    model.load_state_dict(state)
    return model


def state_names(config: GPTConfig) -> list[str]:
    """The single model's ``state_dict`` keys, in :meth:`GPT.parameters` order."""
    names = ["embed.weight"]
    for layer in range(config.n_layer):
        names += [f"blocks.{layer}.{suffix}" for suffix, _ in _BLOCK]
    return [*names, "ln_f.weight", "ln_f.bias"]


class StackedKVCache(KVCache):
    """Keys and values of ``K`` models for incremental decoding: per layer ``(K B, H, capacity, d_head)``.

    :class:`hlsm.lm.model.KVCache` over the ``K * B`` rows of all models (static buffers allocated on
    first use: decoding writes in place, nothing is concatenated); repeating rows keeps each model's
    rows together.
    """

    def __init__(self, n_layer: int, capacity: int, models: int) -> None:
        super().__init__(n_layer, capacity)
        self.models = models

    def repeat_interleave(self, repeats: int) -> None:
        """Copy every row of every model ``repeats`` times in place of it (within each model's rows)."""

        def expand(t: Tensor | None) -> Tensor | None:
            if t is None:
                return None
            rows = t.reshape(self.models, -1, *t.shape[1:]).repeat_interleave(repeats, dim=1)
            return rows.reshape(-1, *t.shape[1:])

        self.keys = [expand(k) for k in self.keys]
        self.values = [expand(v) for v in self.values]


def _linear(x: Tensor, weight: Tensor) -> Tensor:
    """``(K, N, in) @ (K, out, in)^T -> (K, N, out)``: each model's ``F.linear`` without bias.

    One model: ``F.linear`` itself (the single model's arithmetic). Several: one ``torch.bmm``
    with the weights transposed into contiguous memory first (measured on CPU: the product with a
    transposed view ran at 65% of the contiguous one's rate; the copy is of the weights only).
    """
    if x.shape[0] == 1:  # views, not selects: a select's backward allocates and scatters a full gradient
        return F.linear(x.view(x.shape[1:]), weight.view(weight.shape[1:])).unsqueeze(0)
    return torch.bmm(x, weight.transpose(1, 2).contiguous())


def _layer_norm(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """Each model's LayerNorm: ``x`` is ``(K, ..., d)``, ``weight`` and ``bias`` ``(K, d)``.

    One fused ``F.layer_norm`` per model: the single model's kernel, whose backward sums the scale
    and shift gradients in its own order (a broadcast ``(K, ..., d)`` form changes that order).
    """
    if x.shape[0] == 1:
        d = x.shape[-1:]
        return F.layer_norm(x.view(x.shape[1:]), d, weight.view(d), bias.view(d)).unsqueeze(0)
    members = zip(x.unbind(0), weight.unbind(0), bias.unbind(0), strict=True)  # one backward for all slices
    return torch.stack([F.layer_norm(xk, x.shape[-1:], wk, bk) for xk, wk, bk in members])


class StackedGPT(nn.Module):
    """``K`` GPTs of one :class:`GPTConfig` as one module; ``forward(idx) -> logits`` with a model axis.

    Parameters
    ----------
    config
        The members' shared sizes. Dropout (``config.dropout > 0``) draws its masks in the order
        the single model does, from the global RNG: one member reproduces its run alone, several
        share one stream (the experiments train without dropout).
    models
        ``K``.

    Examples
    --------
    >>> stack = StackedGPT.from_models([GPT(cfg), GPT(cfg)])          # doctest: +SKIP
    >>> logits = stack(torch.zeros(2, 4, 10, dtype=torch.long))        # (2, 4, 10, V)
    """

    rope_cos: Tensor
    rope_sin: Tensor

    def __init__(self, config: GPTConfig, models: int) -> None:
        super().__init__()
        if models < 1:
            raise ValueError(f"a stack needs at least one model, got {models}")
        assert config.d_ff is not None
        self.config, self.models = config, models
        d, f = config.d_model, config.d_ff
        shapes = {"embed.weight": (config.vocab_size, d), "ln_f.weight": (d,), "ln_f.bias": (d,)}
        for layer in range(config.n_layer):
            shapes |= {f"blocks.{layer}.{suffix}": shape(d, f) for suffix, shape in _BLOCK}
        for name in state_names(config):
            self.register_parameter(name.replace(".", "__"), nn.Parameter(torch.zeros(models, *shapes[name])))
        cos, sin = _rope_tables(config)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    # --- members in and out -------------------------------------------------------------------
    def stacked(self, name: str) -> nn.Parameter:
        """The stacked parameter of the single model's ``state_dict`` key ``name``: ``(K, *shape)``."""
        param = getattr(self, name.replace(".", "__"))
        assert isinstance(param, nn.Parameter)
        return param

    @classmethod
    def from_states(cls, config: GPTConfig, states: Sequence[dict[str, Tensor]]) -> StackedGPT:
        """A stack of the models whose :meth:`GPT.state_dict` are ``states`` (copied)."""
        ref = states[0][state_names(config)[0]]
        stack = cls(config, len(states)).to(device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            for name in state_names(config):
                stack.stacked(name).copy_(torch.stack([s[name] for s in states]))
        return stack

    @classmethod
    def from_models(cls, models: Sequence[GPT]) -> StackedGPT:
        """A stack of ``models`` (equal configs), weights copied."""
        configs = {m.config for m in models}
        if len(configs) != 1:
            raise ValueError("models of a stack must share one GPTConfig")
        return cls.from_states(models[0].config, [m.state_dict() for m in models])

    def member_state(self, k: int) -> dict[str, Tensor]:
        """Model ``k``'s weights as a :meth:`GPT.state_dict` (detached copies)."""
        return {name: self.stacked(name)[k].detach().clone() for name in state_names(self.config)}

    def member(self, k: int) -> GPT:
        """Model ``k`` as a standalone :class:`GPT` (a copy, on the stack's device and dtype).

        Draws nothing from the random stream (the copy's initial weights are overwritten), so taking a
        member out to evaluate it leaves a run's random state as it would be alone.
        """
        weight = self.stacked("embed.weight")
        return gpt_from_state(self.config, self.member_state(k)).to(device=weight.device, dtype=weight.dtype)

    def select(self, keep: Sequence[int]) -> StackedGPT:
        """A new stack of the members ``keep`` (weights copied), e.g. without the models that finished."""
        return StackedGPT.from_states(self.config, [self.member_state(k) for k in keep])

    def num_params(self) -> int:
        """Parameters of one member (the tied head counted once)."""
        return sum(p.numel() for p in self.parameters()) // self.models

    def new_cache(self, capacity: int | None = None) -> StackedKVCache:
        capacity = self.config.max_len if capacity is None else capacity
        if capacity > self.config.max_len:
            raise ValueError(f"cache capacity {capacity} exceeds the model's max_len={self.config.max_len}")
        return StackedKVCache(self.config.n_layer, capacity, self.models)

    # --- the computation ------------------------------------------------------------------------
    def forward(self, idx: Tensor, cache: StackedKVCache | None = None) -> Tensor:
        """Logits of the next token at every position, for every model.

        Parameters
        ----------
        idx
            ``(K, B, T)`` long token ids; model ``k`` reads ``idx[k]``. With a ``cache``, they are
            positions ``cache.pos .. cache.pos + T - 1``.
        cache
            Updated in place.

        Returns
        -------
        Tensor
            ``(K, B, T, V)``; entry ``[k, b, t]`` is model ``k``'s prediction of token ``t + 1``.
        """
        K, B, T = idx.shape
        if K != self.models:
            raise ValueError(f"ids for {K} models given to a stack of {self.models}")
        cfg = self.config
        start = 0 if cache is None else cache.pos
        if start + T > cfg.max_len:
            raise ValueError(f"sequence of {start + T} positions exceeds max_len={cfg.max_len}")
        H, D, C = cfg.n_head, cfg.head_dim, cfg.d_model
        embed = self.stacked("embed.weight")  # (K, V, C)
        offsets = torch.arange(K, device=idx.device).view(K, 1, 1) * cfg.vocab_size
        # one embedding lookup in the members' tables laid end to end (its backward: the single model's)
        x = F.embedding((idx + offsets).reshape(-1), embed.reshape(K * cfg.vocab_size, C)).view(K, B * T, C)
        p = cfg.dropout if self.training else 0.0
        x = F.dropout(x, p, self.training)
        cos, sin = self.rope_cos[start : start + T], self.rope_sin[start : start + T]
        if T == 1:
            mask = None
        else:
            keys = start + T
            mask = torch.arange(keys, device=idx.device)[None, :] <= start + torch.arange(T, device=idx.device)[:, None]
        for layer in range(cfg.n_layer):
            w = lambda suffix: self.stacked(f"blocks.{layer}.{suffix}")  # noqa: E731, B023
            h = _layer_norm(x, w("ln1.weight"), w("ln1.bias"))
            qkv = _linear(h, w("attn.qkv.weight")).view(K * B, T, 3 * C)
            q, k, v = (t.reshape(K * B, T, H, D).transpose(1, 2) for t in qkv.split(C, dim=2))
            q, k = _rotate(q, cos.to(q.dtype), sin.to(q.dtype)), _rotate(k, cos.to(k.dtype), sin.to(k.dtype))
            if cache is not None:
                k, v = cache.update(layer, k, v)
            if not cfg.sdpa or decode_by_hand(T, x):  # the explicit reference attention
                att = (q @ k.transpose(-2, -1)) / math.sqrt(D)
                if mask is not None:
                    att = att.masked_fill(~mask, float("-inf"))
                y = F.dropout(att.softmax(dim=-1), p=p, training=self.training) @ v
            elif mask is not None and k.shape[2] == T:
                y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
            else:
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
            y = y.transpose(1, 2).reshape(K, B * T, C)
            x = x + F.dropout(_linear(y, w("attn.proj.weight")), p, self.training)
            h = _layer_norm(x, w("ln2.weight"), w("ln2.bias"))
            x = x + F.dropout(_linear(F.gelu(_linear(h, w("fc1.weight"))), w("fc2.weight")), p, self.training)
        if cache is not None:
            cache.pos += T
        x = _layer_norm(x, self.stacked("ln_f.weight"), self.stacked("ln_f.bias"))
        return _linear(x, embed).view(K, B, T, cfg.vocab_size)


def stacked_param_groups(stack: StackedGPT) -> dict[str, list[str]]:
    """The single model's AdamW groups by name: ``decay`` (2+ dims in one model), ``no_decay``."""
    names = state_names(stack.config)
    decay = [n for n in names if stack.stacked(n).dim() >= 3]
    return {"decay": decay, "no_decay": [n for n in names if n not in decay]}


class SingleStack:
    """A :class:`GPT` seen as a stack of one: ``(1, B, T)`` ids in, ``(1, B, T, V)`` logits out.

    Shares the model (no copy): code written for stacks runs a single model through this view
    with the model's own kernels.
    """

    def __init__(self, model: GPT) -> None:
        self.model, self.config, self.models = model, model.config, 1

    @property
    def training(self) -> bool:
        return self.model.training

    def __call__(self, idx: Tensor, cache: KVCache | StackedKVCache | None = None) -> Tensor:
        assert not isinstance(cache, StackedKVCache)
        return self.model(idx[0], cache).unsqueeze(0)

    def new_cache(self, capacity: int) -> KVCache:
        return self.model.new_cache(capacity)

    def parameters(self) -> Iterator[nn.Parameter]:
        return self.model.parameters()

    def train(self, mode: bool = True) -> None:
        self.model.train(mode)

    def eval(self) -> None:
        self.model.eval()


def as_stack(model: nn.Module | SingleStack) -> StackedGPT | SingleStack:
    """``model`` itself if it is a stack, else a :class:`SingleStack` view of the :class:`GPT`."""
    if isinstance(model, (StackedGPT, SingleStack)):
        return model
    if not isinstance(model, GPT):
        raise TypeError(f"expected a GPT or StackedGPT, got {type(model).__name__}")
    return SingleStack(model)
