"""TRL for real: two GRPO steps on an hlsm export with hlsm's reward, then the generations scored back.

Slow and optional (``pip install 'hlsm[trl]'``): a tiny random causal LM and a character tokenizer are
built locally (nothing is downloaded), so the test checks the plumbing — the export's columns reach
``hlsm_reward`` as keyword arguments, rewards come back one per completion, and generations score
back through ``hlsm.app.export.score_generations`` — not that the model learns.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hlsm.app.cli import main
from hlsm.examples import DESIGNS

pytestmark = [
    pytest.mark.slow,
    # third-party deprecation notices (TRL sets transformers options it is renaming) are not this test's subject
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

DESIGN = DESIGNS / "fit_tiny.toml"


def _char_tokenizer(texts: list[str]):  # type: ignore[no-untyped-def]
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<eos>"]
    chars = sorted({c for t in texts for c in t} | set("abcdefghijklmnopqrstuvwxyz>|?` \n"))
    vocab = {tok: i for i, tok in enumerate(specials + chars)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>")
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    return tokenizer


def test_two_grpo_steps_with_the_hlsm_reward_and_score_back(tmp_path: Path) -> None:
    pytest.importorskip("trl")
    import pyarrow.parquet as pq
    import torch
    from datasets import Dataset
    from transformers import GPT2Config, GPT2LMHeadModel
    from trl import GRPOConfig, GRPOTrainer

    from hlsm.app.export import score_generations
    from hlsm.app.rewards import hlsm_reward

    out = tmp_path / "export"
    assert main(["export", "--design", str(DESIGN), "--format", "trl", "--out", str(out), "--inputs", "2"]) == 0
    train = pq.read_table(out / "train.parquet").to_pylist()
    test = pq.read_table(out / "test.parquet").to_pylist()[:8]
    prompts = [m["content"] for r in train + test for m in r["prompt"]]
    tokenizer = _char_tokenizer(prompts)
    longest = max(len(p) for p in prompts)
    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=longest + 64,
        n_embd=32,
        n_layer=1,
        n_head=2,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = GPT2LMHeadModel(config)
    calls: list[int] = []

    def reward(completions, ground_truth, hlsm, **kwargs):  # type: ignore[no-untyped-def]
        scores = hlsm_reward(completions, ground_truth, hlsm, **kwargs)
        calls.append(len(scores))
        assert len(scores) == len(completions) and set(scores) <= {0.0, 1.0}
        return scores

    args = GRPOConfig(
        output_dir=str(tmp_path / "grpo"),
        max_steps=2,
        per_device_train_batch_size=2,
        num_generations=2,
        max_completion_length=16,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=False,
        beta=0.0,
        seed=0,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[reward],
        args=args,
        train_dataset=Dataset.from_list(train),
        processing_class=tokenizer,
    )
    trainer.train()
    assert len(calls) >= 2 and all(n == 2 for n in calls)  # two steps, one reward per completion
    # the trained model's generations, scored back by hlsm
    rows = []
    for row in test:
        text = tokenizer.apply_chat_template(row["prompt"], tokenize=False)
        ids = tokenizer(text, return_tensors="pt").input_ids
        new = model.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        rows.append({**row, "response": tokenizer.decode(new[0, ids.shape[1] :], skip_special_tokens=True)})
    (tmp_path / "gen.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    scored = score_generations(tmp_path / "gen.jsonl")
    assert sum(v["n"] for v in scored.values()) == len(rows)
    assert all(0.0 <= v["accuracy"] <= 1.0 for v in scored.values())
