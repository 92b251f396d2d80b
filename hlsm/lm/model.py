"""A small decoder-only transformer (GPT) with rotary position embeddings and a KV cache.

Architecture (nanoGPT-like): token embedding; ``n_layer`` pre-LayerNorm blocks, each
``x + Attn(LN(x))`` then ``x + MLP(LN(x))`` with a GELU MLP of width ``d_ff``; a final LayerNorm;
an output head *tied* to the token embedding (``logits = LN(x) E^T``). Attention is causal
multi-head attention with RoPE (rotate-half form, base ``rope_base``) applied to queries and keys,
computed by :func:`torch.nn.functional.scaled_dot_product_attention` (``sdpa=True``) or by an
explicit ``softmax(q k^T / sqrt(d_head)) v`` (``sdpa=False``, the reference). Linear layers have
no bias. Positions are absolute indices ``0 .. max_len - 1`` of the sequence.

:class:`KVCache` stores every layer's keys and values so that decoding one token costs one
position of compute instead of the whole prefix (:mod:`hlsm.lm.sampling`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hlsm.config import ConfigError


@dataclass(frozen=True)
class GPTConfig:
    """Sizes of the transformer.

    Parameters
    ----------
    vocab_size : int
        Number of token ids ``V``.
    max_len : int
        Longest sequence (positions of the RoPE table and the KV cache).
    n_layer, n_head, d_model : int
        Blocks, attention heads, residual width (``d_model / n_head`` must be even for RoPE).
    d_ff : int or None
        MLP width; None means ``4 * d_model``.
    dropout : float
        Dropout on attention weights and on each residual branch, in ``[0, 1)``.
    rope_base : float
        RoPE frequency base: pair ``i`` of a head rotates by ``pos * rope_base**(-2i / d_head)``.
    sdpa : bool
        Fused ``scaled_dot_product_attention`` (True) or the explicit reference attention.
    """

    vocab_size: int
    max_len: int
    n_layer: int = 3
    n_head: int = 4
    d_model: int = 128
    d_ff: int | None = None
    dropout: float = 0.0
    rope_base: float = 10000.0
    sdpa: bool = True

    def __post_init__(self) -> None:
        for name in ("vocab_size", "max_len", "n_layer", "n_head", "d_model", "d_ff"):
            value = getattr(self, name)
            if value is None and name == "d_ff":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"GPTConfig.{name} must be a positive whole number, got {value!r}")
        if self.d_ff is None:
            object.__setattr__(self, "d_ff", 4 * self.d_model)
        if self.d_model % self.n_head or (self.d_model // self.n_head) % 2:
            raise ConfigError(
                f"d_model={self.d_model} must split into n_head={self.n_head} heads of even width (RoPE rotates "
                "pairs of dimensions); choose d_model divisible by 2 * n_head"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout}")
        if not self.rope_base > 0:
            raise ConfigError(f"GPTConfig.rope_base must be positive, got {self.rope_base}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> GPTConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise ConfigError(f"unknown GPTConfig key(s) {unknown}; allowed: {sorted(names)}")
        return cls(**raw)


class KVCache:
    """Keys and values of every layer for incremental decoding.

    Buffers of shape ``(B, n_head, capacity, d_head)`` per layer, allocated on first use with the
    dtype and device of the keys; ``pos`` positions are filled. :meth:`GPT.forward` writes the new
    positions of every layer and then advances ``pos``.
    """

    def __init__(self, n_layer: int, capacity: int) -> None:
        self.capacity = capacity
        self.pos = 0
        self.keys: list[Tensor | None] = [None] * n_layer
        self.values: list[Tensor | None] = [None] * n_layer

    def repeat_interleave(self, repeats: int) -> None:
        """Copy every row ``repeats`` times in place of it (row ``b`` becomes rows ``b*repeats ..``)."""
        self.keys = [None if k is None else k.repeat_interleave(repeats, dim=0) for k in self.keys]
        self.values = [None if v is None else v.repeat_interleave(repeats, dim=0) for v in self.values]

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store ``(B, H, T, d_head)`` keys/values at ``pos .. pos+T-1``; return all ``pos+T`` of them."""
        B, H, T, D = k.shape
        end = self.pos + T
        if end > self.capacity:
            raise ValueError(f"the KV cache holds {self.capacity} positions; writing up to {end} overflows it")
        if self.keys[layer] is None:
            self.keys[layer] = k.new_zeros((B, H, self.capacity, D))
            self.values[layer] = v.new_zeros((B, H, self.capacity, D))
        keys, values = self.keys[layer], self.values[layer]
        assert keys is not None and values is not None
        keys[:, :, self.pos : end] = k
        values[:, :, self.pos : end] = v
        return keys[:, :, :end], values[:, :, :end]


def _rope_tables(config: GPTConfig) -> tuple[Tensor, Tensor]:
    """``cos``, ``sin`` of shape ``(max_len, d_head)`` (each frequency repeated for both halves)."""
    half = config.head_dim // 2
    inv_freq = config.rope_base ** (-torch.arange(half, dtype=torch.float64) / half)
    angles = torch.arange(config.max_len, dtype=torch.float64)[:, None] * inv_freq[None, :]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().float(), angles.sin().float()


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate-half RoPE of ``(B, H, T, D)`` with ``(T, D)`` tables."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


def decode_by_hand(T: int, x: Tensor) -> bool:
    """Whether one decoded position attends by explicit ``softmax(q k^T / sqrt(d)) v``, not SDPA.

    On CPU, one query against a few dozen cached keys ran 1.8x faster by hand than through
    ``scaled_dot_product_attention`` (``B = 512``, 4 heads of 24, 30 keys; the SDPA kernel's setup
    dominates); on CUDA the fused kernel is kept.
    """
    return T == 1 and x.device.type == "cpu"


class CausalSelfAttention(nn.Module):
    """Multi-head causal attention with RoPE; see the module docstring."""

    def __init__(self, config: GPTConfig, layer: int) -> None:
        super().__init__()
        self.config, self.layer = config, layer
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=False)
        self.resid_drop = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, start: int, cache: KVCache | None) -> Tensor:
        B, T, C = x.shape
        H, D = self.config.n_head, self.config.head_dim
        q, k, v = (t.view(B, T, H, D).transpose(1, 2) for t in self.qkv(x).split(C, dim=2))
        q, k = _rotate(q, cos.to(q.dtype), sin.to(q.dtype)), _rotate(k, cos.to(k.dtype), sin.to(k.dtype))
        if cache is not None:
            k, v = cache.update(self.layer, k, v)
        S = k.shape[2]
        # query i sits at position start + i and sees keys 0 .. start + i
        mask = (
            None
            if T == 1
            else torch.arange(S, device=x.device)[None, :] <= start + torch.arange(T, device=x.device)[:, None]
        )
        p = self.config.dropout if self.training else 0.0
        if self.config.sdpa and not decode_by_hand(T, x):
            if mask is not None and S == T:
                y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
            else:
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        else:
            att = (q @ k.transpose(-2, -1)) / math.sqrt(D)
            if mask is not None:
                att = att.masked_fill(~mask, float("-inf"))
            att = F.dropout(att.softmax(dim=-1), p=p, training=self.training)
            y = att @ v
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(B, T, C)))


class Block(nn.Module):
    """``x + Attn(LN(x))`` then ``x + MLP(LN(x))``."""

    def __init__(self, config: GPTConfig, layer: int) -> None:
        super().__init__()
        assert config.d_ff is not None
        self.ln1 = nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config, layer)
        self.ln2 = nn.LayerNorm(config.d_model)
        self.fc1 = nn.Linear(config.d_model, config.d_ff, bias=False)
        self.fc2 = nn.Linear(config.d_ff, config.d_model, bias=False)
        self.mlp_drop = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, start: int, cache: KVCache | None) -> Tensor:
        x = x + self.attn(self.ln1(x), cos, sin, start, cache)
        return x + self.mlp_drop(self.fc2(F.gelu(self.fc1(self.ln2(x)))))


class GPT(nn.Module):
    """Decoder-only transformer over token ids; ``forward(idx) -> logits``.

    Examples
    --------
    >>> model = GPT(GPTConfig(vocab_size=48, max_len=64))
    >>> logits = model(torch.zeros(2, 10, dtype=torch.long))      # (2, 10, 48)
    """

    rope_cos: Tensor
    rope_sin: Tensor

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        blocks = [Block(config, i) for i in range(config.n_layer)]
        self.blocks = nn.ModuleList(blocks)
        self.ln_f = nn.LayerNorm(config.d_model)
        cos, sin = _rope_tables(config)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init)
        for block in blocks:  # GPT-2: residual projections scaled by 1/sqrt(2 n_layer)
            for w in (block.attn.proj.weight, block.fc2.weight):
                nn.init.normal_(w, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    def num_params(self) -> int:
        """Number of parameters (the tied head counted once)."""
        return sum(p.numel() for p in self.parameters())

    def new_cache(self, capacity: int | None = None) -> KVCache:
        """An empty KV cache for up to ``capacity`` positions (default ``max_len``)."""
        capacity = self.config.max_len if capacity is None else capacity
        if capacity > self.config.max_len:
            raise ValueError(f"cache capacity {capacity} exceeds the model's max_len={self.config.max_len}")
        return KVCache(self.config.n_layer, capacity)

    def forward(self, idx: Tensor, cache: KVCache | None = None) -> Tensor:
        """Logits of the next token at every position.

        Parameters
        ----------
        idx : Tensor
            ``(B, T)`` long token ids. With a ``cache``, they are the positions
            ``cache.pos .. cache.pos + T - 1`` following what the cache holds.
        cache : KVCache or None
            Updated in place (keys/values written, ``pos`` advanced by ``T``).

        Returns
        -------
        Tensor
            ``(B, T, V)`` logits; row ``t`` predicts token ``t + 1``.
        """
        B, T = idx.shape
        start = 0 if cache is None else cache.pos
        if start + T > self.config.max_len:
            raise ValueError(
                f"sequence of {start + T} positions exceeds max_len={self.config.max_len}; "
                "build the model with a larger max_len"
            )
        cos = self.rope_cos[start : start + T]
        sin = self.rope_sin[start : start + T]
        x = self.drop(self.embed(idx))
        for block in self.blocks:
            x = block(x, cos, sin, start, cache)
        if cache is not None:
            cache.pos += T
        return self.ln_f(x) @ self.embed.weight.t()
