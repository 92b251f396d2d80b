"""hlsm export: parquet layouts for verl and TRL, the reward, scoring generations back."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hlsm.app.cli import main
from hlsm.app.export import export_design, load_export_design, score_generations
from hlsm.app.rewards import compute_score, hlsm_reward, judge
from hlsm.design import DesignConfig, make_design
from hlsm.examples import DESIGNS
from hlsm.lm.evaluate import design_splits
from hlsm.programs import Program, execute_one
from hlsm.spec import Spec

DESIGN = """
[spec]
alphabet = 4
length = 4
skills = ["reverse", "sort", "shift_up", "rotate_left"]
routings = ["chain", "restart"]

[design]
train_depth = 2
deeper_depths = [3]
n_sft = 6
n_rl = 4
n_unseen = 4
n_deeper = 5
"""


@pytest.fixture(scope="module")
def design_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("export") / "design.toml"
    path.write_text(DESIGN)
    return path


@pytest.fixture(scope="module", params=["verl", "trl"])
def exported(request: pytest.FixtureRequest, design_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp(request.param)
    assert main(["export", "--design", str(design_file), "--format", request.param, "--out", str(out)]) == 0
    return out


def _split_sizes(design_file: Path) -> dict[str, int]:
    spec, design, _ = load_export_design(design_file)
    return {k: len(v) for k, v in design_splits(design).items()}


def _flat(row: dict, trainer: str) -> dict:
    """The layout-neutral fields of a row of either layout."""
    if trainer == "verl":
        return {**row["extra_info"], "ground_truth": row["reward_model"]["ground_truth"], "prompt": row["prompt"]}
    return row


def test_schema_and_split_counts(exported: Path, design_file: Path) -> None:
    trainer = json.loads((exported / "export.json").read_text())["format"]
    train, test = (pq.read_table(exported / f).to_pylist() for f in ("train.parquet", "test.parquet"))
    columns = set(pq.read_schema(exported / "test.parquet").names)
    if trainer == "verl":
        assert columns == {"data_source", "prompt", "ability", "reward_model", "extra_info"}
        row = test[0]
        assert row["data_source"] == f"hlsm/{row['extra_info']['split']}" and isinstance(row["ability"], str)
        assert row["reward_model"]["style"] == "rule"
        assert set(row["extra_info"]) == {"split", "program", "depth", "index", "hlsm"}
    else:
        assert {"prompt", "ground_truth", "split", "program", "depth"} <= columns
    for row in train + test:
        flat = _flat(row, trainer)
        assert [m["role"] for m in flat["prompt"]] == ["user"] and "LAST line" in flat["prompt"][0]["content"]
        assert isinstance(flat["ground_truth"], str) and isinstance(flat["depth"], int)
    sizes = _split_sizes(design_file)
    counts: dict[str, int] = {}
    for row in test:
        split = _flat(row, trainer)["split"]
        counts[split] = counts.get(split, 0) + 1
    assert counts == sizes
    assert [_flat(r, trainer)["split"] for r in train] == ["rl"] * sizes["rl"]


def test_ground_truth_is_the_execution(exported: Path) -> None:
    trainer = json.loads((exported / "export.json").read_text())["format"]
    for row in pq.read_table(exported / "test.parquet").to_pylist():
        flat = _flat(row, trainer)
        task = json.loads(flat["hlsm"])
        spec = Spec.from_dict(task["spec"])
        x0_text, symbols = task["prompt"].split(" | ")
        program = Program.from_symbols(spec, symbols.split())
        assert program.names(spec) == flat["program"] and program.depth == flat["depth"]
        states = execute_one(spec, program, spec.parse_state(x0_text))
        assert flat["ground_truth"] == spec.render_state(states[-1])
        assert f"`{task['prompt']}`" in flat["prompt"][0]["content"]
        golden = " ".join(f"> {spec.render_state(s)}" for s in states[1:])
        assert judge(golden, flat["ground_truth"], flat["hlsm"]) == "correct"


def test_inputs_multiply_rows_and_fixed_slots(tmp_path: Path) -> None:
    spec = Spec(alphabet=3, length=3, skills=("reverse", "sort"), routings=("chain",))
    design = make_design(spec, DesignConfig(train_depth=2, deeper_depths=(3,), n_sft=1, n_rl=1, n_unseen=1, n_deeper=2))
    from hlsm.lm.data import TaskFormat

    summary = export_design(spec, design, tmp_path, "trl", fmt=TaskFormat(slots=4), inputs=3)
    assert summary["train"] == {"rl": 3}
    rows = pq.read_table(tmp_path / "test.parquet").to_pylist()
    assert "NOP" in json.loads(rows[0]["hlsm"])["prompt"]
    for row in rows:
        x0, _ = json.loads(row["hlsm"])["prompt"].split(" | ")
        states = execute_one(spec, Program.from_names(spec, row["program"]), spec.parse_state(x0))
        golden = " ".join(f"> {spec.render_state(s)}" for s in states[1:])
        assert hlsm_reward([golden], [row["ground_truth"]], hlsm=[row["hlsm"]]) == [1.0]


# ---------------------------------------------------------------------------------------------
# the reward on hand-made completions

SPEC = Spec(alphabet=4, length=4, skills=("reverse", "sort"), routings=("chain", "restart"))
PROMPT = "dcab | R0 S0 R0 S13"  # reverse -> bacd, then sort -> abcd
TASK = json.dumps({"spec": SPEC.to_dict(), "format": {"slots": None, "echo": False}, "prompt": PROMPT})


@pytest.mark.parametrize(
    ("completion", "reward"),
    [
        ("> bacd > abcd", 1.0),
        ("Reverse gives bacd, then sorting gives abcd.\n> bacd > abcd\n", 1.0),  # reasoning before: fine
        ("`> bacd > abcd`", 1.0),
        (f"{PROMPT} > bacd > abcd", 1.0),  # the whole trace
        ("> bacd > abdc", 0.0),  # wrong answer
        ("> abcd", 0.0),  # one state for two steps: malformed
        ("> ? > abcd", 0.0),  # a hidden state
        ("> bacd > abcd\nso the answer is abcd", 0.0),  # extra text after the answer line
        ("> bacd > abcd done", 0.0),  # extra text on the answer line
        ("> bacd > abcde", 0.0),  # wrong length
        ("", 0.0),
        ("abcd", 0.0),
    ],
)
def test_reward_on_hand_made_completions(completion: str, reward: float) -> None:
    assert compute_score("hlsm", completion, "abcd", {"hlsm": TASK}) == reward
    assert hlsm_reward([completion], ["abcd"], hlsm=[TASK], prompts=["ignored"]) == [reward]


def test_reward_verdicts_and_message_completions() -> None:
    assert judge("> bacd > abdc", "abcd", TASK) == "wrong"
    assert judge("> abcd", "abcd", TASK) == "malformed"
    messages = [[{"role": "assistant", "content": "> bacd > abcd"}], [{"role": "assistant", "content": "> x"}], []]
    assert hlsm_reward(messages, ["abcd"] * 3, hlsm=[TASK] * 3) == [1.0, 0.0, 0.0]
    # without the task JSON: the last entry of the last line only
    assert compute_score("hlsm", "> zzzz > abcd", "abcd") == 1.0
    assert compute_score("hlsm", "abcd", "abcd") == 0.0
    # verl passes more keywords when a reward model is on: accepted and ignored
    assert (
        compute_score(
            data_source="hlsm/unseen",
            solution_str="> zzzz > abcd",
            ground_truth="abcd",
            extra_info=None,
            reward_router_address=None,
            reward_model_tokenizer=None,
        )
        == 1.0
    )


def test_score_generations_per_split(exported: Path, tmp_path: Path) -> None:
    trainer = json.loads((exported / "export.json").read_text())["format"]
    rows = pq.read_table(exported / "test.parquet").to_pylist()
    lines = []
    for i, row in enumerate(rows):
        flat = _flat(row, trainer)
        task = json.loads(flat["hlsm"])
        spec = Spec.from_dict(task["spec"])
        x0, symbols = task["prompt"].split(" | ")
        states = execute_one(spec, Program.from_symbols(spec, symbols.split()), spec.parse_state(x0))
        golden = " ".join(f"> {spec.render_state(s)}" for s in states[1:])
        # seen: always right; unseen: two samples, one right, one malformed; others: wrong answers
        if flat["split"] == "seen":
            row["response"] = golden
        elif flat["split"] == "unseen":
            row["response"] = [golden, "no idea"]
        else:
            row["response"] = [{"role": "assistant", "content": golden[:-1] + ("a" if golden[-1] != "a" else "b")}]
        lines.append(json.dumps(row) if i % 2 else json.dumps(row, indent=None))
    path = tmp_path / "generations.jsonl"
    path.write_text("\n".join(lines) + "\n")
    scores = score_generations(path)
    assert scores["seen"]["accuracy"] == 1.0 and scores["seen"]["se"] == 0.0
    assert scores["unseen"]["n"] == 2 * 4 and scores["unseen"]["accuracy"] == 0.5
    assert scores["unseen"]["malformed"] == 0.5
    assert scores["atomic"]["accuracy"] == 0.0 and scores["atomic"]["malformed"] == 0.0


def test_one_design_schema_for_identify_fit_and_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The shipped fit_tiny design (explicit [sft], [rl], [candidates], a [fit] section) runs through all three."""
    design = DESIGNS / "fit_tiny.toml"
    assert main(["identify", "--design", str(design), "--json"]) == 0
    identified = json.loads(capsys.readouterr().out)
    out = tmp_path / "export"
    assert main(["export", "--design", str(design), "--format", "trl", "--out", str(out)]) == 0
    meta = json.loads((out / "export.json").read_text())
    assert meta["train"] == {"rl": 2} and meta["test"]["unseen"] == identified["unseen_total"]
    assert meta["design"]["splits"]["rl"] == [
        "chain:shift_down > chain:shift_down",
        "restart:reverse > chain:shift_up > restart:shift_up",
    ]
    text = design.read_text().replace("steps = 1500", "steps = 5").replace("restarts = 4", "restarts = 1")
    quick = tmp_path / "fit_tiny.toml"
    quick.write_text(text + "\n[format]\nslots = 4\n")  # [format] is export's; identify and fit accept it
    assert main(["fit", "--design", str(quick), "--out", str(tmp_path / "fit"), "--quiet"]) == 0
    assert main(["identify", "--design", str(quick)]) == 0
    assert main(["export", "--design", str(quick), "--format", "verl", "--out", str(tmp_path / "v")]) == 0
