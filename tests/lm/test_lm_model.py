"""The GPT and its sampler: causality, KV cache against full recomputation, log-probs, shapes."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from hlsm.config import ConfigError
from hlsm.lm.model import GPT, GPTConfig
from hlsm.lm.sampling import GenerationError, generate

V = 23


def make_model(seed: int = 0, double: bool = True, **overrides: object) -> GPT:
    torch.manual_seed(seed)
    kwargs: dict[str, object] = {"vocab_size": V, "max_len": 48, "n_layer": 2, "n_head": 2, "d_model": 32}
    model = GPT(GPTConfig(**(kwargs | overrides)))  # type: ignore[arg-type]
    model.eval()
    return model.double() if double else model


def test_gpt_config_validation() -> None:
    config = GPTConfig(vocab_size=10, max_len=20)
    assert config.d_ff == 4 * 128 and config.head_dim == 32
    assert GPTConfig.from_dict(config.to_dict()) == config
    for kwargs, fragment in [
        ({"vocab_size": 0}, "vocab_size must be a positive"),
        ({"n_layer": 1.5}, "n_layer must be a positive"),
        ({"d_model": 100, "n_head": 3}, "must split into n_head=3 heads of even width"),
        ({"d_model": 12, "n_head": 4}, "heads of even width"),
        ({"dropout": 1.0}, "dropout must be in"),
        ({"rope_base": 0.0}, "rope_base must be positive"),
        ({"d_ff": 0}, "d_ff must be a positive"),
    ]:
        with pytest.raises(ConfigError, match=fragment):
            GPTConfig(**({"vocab_size": 10, "max_len": 20} | kwargs))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown GPTConfig key"):
        GPTConfig.from_dict({"vocab_size": 10, "max_len": 20, "layers": 2})


def test_default_size_is_about_0_6m_parameters_with_a_tied_head() -> None:
    model = GPT(GPTConfig(vocab_size=40, max_len=64))
    assert 590_000 < model.num_params() < 610_000  # 3 x 12 d^2 + V d + LayerNorms
    x = torch.randint(40, (2, 9))
    assert model(x).shape == (2, 9, 40)
    # the output head is the embedding: changing a row of it changes that token's logit only via the head
    assert not any(n.startswith("head") for n, _ in model.named_parameters())


@pytest.mark.parametrize("sdpa", [True, False], ids=["sdpa", "reference"])
def test_changing_future_tokens_does_not_change_past_logits(sdpa: bool) -> None:
    model = make_model(sdpa=sdpa)
    x = torch.randint(V, (3, 30))
    y = x.clone()
    y[:, 17:] = torch.randint(V, (3, 13))
    a, b = model(x), model(y)
    assert torch.equal(a[:, :17], b[:, :17])
    assert not torch.allclose(a[:, 17:], b[:, 17:])


def test_sdpa_equals_reference_attention() -> None:
    fast, ref = make_model(sdpa=True), make_model(sdpa=False)
    ref.load_state_dict(fast.state_dict())
    x = torch.randint(V, (4, 40))
    torch.testing.assert_close(fast(x), ref(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize("sdpa", [True, False], ids=["sdpa", "reference"])
def test_kv_cache_logits_equal_full_recomputation(sdpa: bool) -> None:
    model = make_model(sdpa=sdpa)
    x = torch.randint(V, (3, 40))
    full = model(x)
    for chunks in ([40], [1] * 40, [7, 1, 1, 13, 18], [12, 28]):
        cache = model.new_cache()
        parts, start = [], 0
        for size in chunks:
            parts.append(model(x[:, start : start + size], cache))
            start += size
        assert cache.pos == 40
        torch.testing.assert_close(torch.cat(parts, 1), full, rtol=0, atol=1e-12)


def test_kv_cache_and_length_limits() -> None:
    model = make_model()
    with pytest.raises(ValueError, match="exceeds max_len=48"):
        model(torch.zeros(1, 49, dtype=torch.long))
    cache = model.new_cache(10)
    model(torch.zeros(1, 8, dtype=torch.long), cache)
    with pytest.raises(ValueError, match="holds 10 positions"):
        model(torch.zeros(1, 3, dtype=torch.long), cache)
    with pytest.raises(ValueError, match="exceeds the model's max_len"):
        model.new_cache(49)


def test_cached_greedy_generation_equals_no_cache_generation() -> None:
    model = make_model(seed=3)
    prompts = torch.randint(3, V, (5, 9))
    fast = generate(model, prompts, 30, eos_id=2, greedy=True)
    slow = generate(model, prompts, 30, eos_id=2, greedy=True, use_cache=False)
    assert torch.equal(fast.tokens, slow.tokens) and torch.equal(fast.mask, slow.mask)
    torch.testing.assert_close(fast.logprobs, slow.logprobs, rtol=0, atol=1e-6)
    # sampled: the same generator seed gives the same draws on both paths
    a = generate(model, prompts, 30, eos_id=2, generator=torch.Generator().manual_seed(1))
    b = generate(model, prompts, 30, eos_id=2, generator=torch.Generator().manual_seed(1), use_cache=False)
    assert torch.equal(a.tokens, b.tokens)


def test_repeats_share_the_prompt_pass_and_sample_as_repeated_prompts() -> None:
    """``repeats = G`` runs each prompt once and copies its cache: the same draws, log-probs and
    masks as generating from the prompts repeated G times (with and without the cache)."""
    model = make_model(seed=5)
    prompts = torch.randint(3, V, (4, 7))
    shared = generate(model, prompts, 20, eos_id=2, generator=torch.Generator().manual_seed(2), repeats=3)
    repeated = generate(
        model, prompts.repeat_interleave(3, 0), 20, eos_id=2, generator=torch.Generator().manual_seed(2)
    )
    plain = generate(
        model, prompts, 20, eos_id=2, generator=torch.Generator().manual_seed(2), repeats=3, use_cache=False
    )
    for other in (repeated, plain):
        assert torch.equal(shared.tokens, other.tokens) and torch.equal(shared.mask, other.mask)
        torch.testing.assert_close(shared.logprobs, other.logprobs, rtol=0, atol=1e-5)
    assert shared.tokens.shape == (12, 27) and torch.equal(shared.tokens[:3, :7], prompts[[0, 0, 0]])
    with pytest.raises(GenerationError, match="repeats"):
        generate(model, prompts, 5, eos_id=2, repeats=0)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_equal_log_softmax_of_recomputed_logits(temperature: float) -> None:
    model = make_model(seed=4)
    prompts = torch.randint(3, V, (6, 5))
    gen = generate(model, prompts, 25, eos_id=2, temperature=temperature, generator=torch.Generator().manual_seed(0))
    P = gen.prompt_len
    assert gen.tokens.shape == (6, 30) and gen.logprobs.shape == gen.mask.shape == (6, 25)
    logits = model(gen.tokens[:, :-1])[:, P - 1 :].float()
    expected = torch.log_softmax(logits / temperature, -1).gather(2, gen.new_tokens[..., None]).squeeze(2)
    torch.testing.assert_close(gen.logprobs[gen.mask], expected[gen.mask], rtol=0, atol=1e-5)
    assert (gen.logprobs[~gen.mask] == 0).all()


def test_generation_stops_at_eos_and_pads_after_it() -> None:
    model = make_model(seed=5)
    with torch.no_grad():  # make EOS (id 2) likely so that some sequences stop early
        model.embed.weight[2] *= 0
        model.embed.weight[2] += model.embed.weight[3:].mean(0) * 3
    gen = generate(
        model, torch.randint(3, V, (64, 4)), 20, eos_id=2, pad_id=0, generator=torch.Generator().manual_seed(2)
    )
    new = gen.new_tokens
    assert 0 < int(gen.finished.sum()) < 64
    for row, length, done in zip(new, gen.lengths.tolist(), gen.finished.tolist(), strict=True):
        if done:
            assert row[length - 1] == 2 and not (row[: length - 1] == 2).any()
            assert (row[length:] == 0).all()
        else:
            assert length == 20 and not (row == 2).any()
    assert torch.equal(gen.lengths, gen.mask.sum(1))
    assert (gen.mask[:, 1:] <= gen.mask[:, :-1]).all()  # a prefix of each row


def test_generate_errors() -> None:
    model = make_model()
    with pytest.raises(GenerationError, match="same length, got lengths \\[3, 4\\].*TaskFormat\\(slots=W\\)"):
        generate(model, [[3, 4, 5], [3, 4, 5, 6]], 5, eos_id=2)
    with pytest.raises(GenerationError, match="exceeds the model's max_len=48"):
        generate(model, torch.zeros(2, 40, dtype=torch.long), 9, eos_id=2)
    with pytest.raises(GenerationError, match="temperature must be positive"):
        generate(model, torch.zeros(2, 4, dtype=torch.long), 3, eos_id=2, temperature=0.0)
    with pytest.raises(GenerationError, match="max_new_tokens must be at least 1"):
        generate(model, torch.zeros(2, 4, dtype=torch.long), 0, eos_id=2)
    out = generate(model, [[3, 4, 5], [5, 4, 3]], 2, eos_id=2, greedy=True)
    assert out.tokens.shape == (2, 5) and model.training is False
    model.train()
    generate(model, [[3, 4, 5]], 2, eos_id=2)
    assert model.training  # the mode is restored


def test_lm_never_imports_pyro() -> None:
    code = "import sys, hlsm.lm, hlsm.app.cli; assert 'pyro' not in sys.modules and 'hlsm.infer' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
