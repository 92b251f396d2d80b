"""The `hlsm` command: outputs, and one clear error with exit code 2 for each kind of bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from hlsm.app.cli import main
from hlsm.examples import DESIGNS
from hlsm.simulate import read_jsonl
from hlsm.spec import Spec


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the command in a subprocess, as a user would (checks exit codes and tracebacks)."""
    return subprocess.run([sys.executable, "-m", "hlsm", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_modules_json_lists_the_default_library(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["modules", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    kinds = [m["kind"] for m in data["modules"]]
    assert kinds.count("skill") == 24 and kinds.count("routing") == 10
    assert len({m["symbol"] for m in data["modules"]}) == 34
    assert all(m["description"] for m in data["modules"])
    assert {m["name"] for m in data["modules"]} >= {"chain", "restart", "skip", "reuse_first", "reverse", "sort"}


def test_modules_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["modules"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["symbol", "kind", "name"]
    assert len(out) == 1 + 34


def test_simulate_flags_write_a_readable_corpus(tmp_path: Path) -> None:
    out = tmp_path / "c.jsonl"
    args = ["simulate", "--alphabet", "3", "--length", "3", "--n", "300", "--seed", "4", "--out", str(out)]
    assert main([*args, "--exposure", "answer", "--splits", "sft,rl"]) == 0
    corpus = read_jsonl(Spec.tiny(), out)
    assert len(corpus) == 300
    assert set(corpus.split) <= {"sft", "rl"}
    assert all(
        m[: int(d)].tolist()[-1] and not any(m[: int(d) - 1].tolist())
        for m, d in zip(corpus.mask, corpus.programs.depth, strict=True)
    )
    config = json.loads(out.with_suffix(".config.json").read_text())
    assert config["simulate"]["n"] == 300 and config["spec"]["alphabet"] == 3
    # the same seed gives the same file
    again = tmp_path / "again.jsonl"
    assert main([*args[:-1], str(again), "--exposure", "answer", "--splits", "sft,rl"]) == 0
    assert again.read_bytes() == out.read_bytes()


def test_simulate_config_file(tmp_path: Path) -> None:
    config = tmp_path / "sim.toml"
    out = tmp_path / "c.jsonl"
    config.write_text(
        f"""
[spec]
alphabet = 3
length = 3
skills = ["reverse", "sort", "shift_up"]
routings = ["chain", "restart"]

[design]
train_depth = 2
deeper_depths = [3]
n_sft = 10
n_rl = 5
n_unseen = 5
n_deeper = 5

[simulate]
n = 50
splits = ["unseen", "deeper"]
out = "{out}"
"""
    )
    assert main(["simulate", "--config", str(config)]) == 0
    corpus = read_jsonl(Spec.tiny(skills=("reverse", "sort", "shift_up"), routings=("chain", "restart")), out)
    assert len(corpus) == 50
    assert set(corpus.programs.depth.tolist()) <= {2, 3}
    # --depth sets the training depth; deeper depths the config sets stay (not silently replaced)
    assert main(["simulate", "--config", str(config), "--depth", "2", "--n", "20"]) == 0
    saved = json.loads(out.with_suffix(".config.json").read_text())["design"]
    assert saved["train_depth"] == 2 and saved["deeper_depths"] == [3]  # not (3, 4)
    assert main(["simulate", "--depth", "2", "--n", "20", "--out", str(tmp_path / "d.jsonl")]) == 0
    assert json.loads((tmp_path / "d.config.json").read_text())["design"]["deeper_depths"] == [3, 4]
    # --set changes a value of the file; the flags win over it
    argv = ["simulate", "--config", str(config), "--set", "design.seed=7", "--set", "simulate.n=30", "--n", "20"]
    assert main(argv) == 0
    saved = json.loads(out.with_suffix(".config.json").read_text())
    assert saved["design"]["seed"] == 7 and saved["simulate"]["n"] == 20


def test_quickstart_writes_report_and_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), "--traces-per-split", "200", "--scale", "tiny"]) == 0
    report = (out / "report.md").read_text()
    for section in ("## 1. Simulate", "## 2. Identify", "## 3. Fit", "## 4. SFT, RL, evaluate"):
        assert section in report
    top = report.split("## 1. Simulate")[0]  # what the run shows comes first, with its terms glossed
    assert "What this run shows" in top and "is a smoke test" in top and "**Calibration gate**" in top
    assert "the support decides: with the same SFT, RL on programs outside the SFT support determines 34" in top
    assert "| `chain:sort > restart:sort` | not | in G |" in report
    assert len(json.loads((out / "regimes.json").read_text())["rows"]) == 142
    for figure in ("fit/tables.png", "fit/predictive.png", "transformer/accuracy.png"):
        assert f"]({figure})" in report and (out / figure).stat().st_size > 0
    assert json.loads((out / "identify.json").read_text())["unseen_total"] == 300
    fit = json.loads((out / "fit" / "metrics.json").read_text())
    assert fit["recovery"]["skill_binding_accuracy"] == 1.0
    assert "| sft | full | 200 |" in report and "| rl | answer | 200 |" in report
    assert (out / "corpus_counts.png").stat().st_size > 10_000
    summary = json.loads((out / "summary.json").read_text())
    assert summary["corpus"]["traces"] == 800
    assert sum(summary["corpus"]["depth"].values()) == 800
    assert summary["sft_coverage"]["skills_covered"] == 24
    corpus = read_jsonl(Spec(), out / "corpus.jsonl")
    assert len(corpus) == 800
    err = capsys.readouterr().err  # progress: every stage announced, the experiment's stages too
    for stage in ("[quickstart] 1/4", "[quickstart] 2/4", "[quickstart] 3/4", "[quickstart] 4/4", "[experiment] sft"):
        assert stage in err
    assert f"[quickstart] done: {out / 'report.md'}" in err


def test_bench_simulate_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "simulate", "--json", "--n", "2000"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 2000
    assert result["ratio"] == pytest.approx(result["naive_s"] / result["vectorised_s"], rel=0.01)


def test_bench_identify_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "identify", "--json", "--n", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["default_library_candidates"] == 2500
    assert result["ratio"] == pytest.approx(result["oracle_s"] / result["checker_s"], rel=0.05)


def test_bench_unknown_name() -> None:
    result = run_cli("bench", "nothing")
    assert result.returncode == 2 and "unknown benchmark 'nothing'" in result.stderr


def test_custom_skill_flows_through_the_cli_simulator(tmp_path: Path) -> None:
    """A skill registered in user code is usable by name wherever a spec is built."""
    from hlsm.modules import register_skill, unregister

    def double_first(x: torch.Tensor, a: int) -> torch.Tensor:
        return torch.cat([(2 * x[:, :1]) % a, x[:, 1:]], dim=1)

    register_skill("double_first", double_first, "double the first symbol", bijective=False)
    try:
        out = tmp_path / "c.jsonl"
        config = tmp_path / "custom.toml"
        config.write_text(
            '[spec]\nalphabet = 4\nlength = 3\nskills = ["reverse", "double_first"]\nroutings = ["chain"]\n'
            "[design]\ntrain_depth = 2\ndeeper_depths = [3]\nn_sft = 2\nn_rl = 1\nn_unseen = 1\nn_deeper = 2\n"
        )
        assert main(["simulate", "--config", str(config), "--n", "200", "--out", str(out)]) == 0
        spec = Spec(alphabet=4, length=3, skills=("reverse", "double_first"), routings=("chain",))
        corpus = read_jsonl(spec, out)
        k = spec.skills.index("double_first")
        atomic_rows = (corpus.programs.routing[:, 0] < 0) & (corpus.programs.skill[:, 0] == k)
        assert int(atomic_rows.sum()) > 10
        first = corpus.states[atomic_rows, 0, 0]
        assert torch.equal(corpus.states[atomic_rows, 1, 0], (2 * first) % 4)
    finally:
        unregister("double_first")


def test_identify_json_on_example_design(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["identify", "--design", str(DESIGNS / "c1_dead_step.toml"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["unseen_total"] == 3 and report["generalisation_set_size"] == 2
    verdicts = {c["program"]: c for c in report["lib"]["candidates"]}
    assert verdicts["chain:shift_up > restart:reverse"]["identified"]
    assert not verdicts["chain:sort > chain:shift_up"]["identified"]
    assert "S3" in verdicts["chain:sort > chain:shift_up"]["reason"]
    assert report["tab"]["skills"]["S3"]["identified_inputs"] == 0
    assert report["support_graph"]["isolated_symbols"] == ["S3"]


def test_identify_table_and_figure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    figure = tmp_path / "graph.png"
    assert main(["identify", "--design", str(DESIGNS / "c3_sort_masks_routing.toml"), "--figure", str(figure)]) == 0
    out = capsys.readouterr().out
    assert "routing R0   NOT identified  fits: chain, restart" in out
    assert "== H-tab: generalisation set 20/34" in out
    assert figure.stat().st_size > 10_000
    # the figure is drawn from the record saved beside it: the support graph and the verdicts
    record = json.loads(figure.with_suffix(".json").read_text())
    spec = Spec.from_dict(tomllib.loads((DESIGNS / "c3_sort_masks_routing.toml").read_text())["spec"])
    assert {n["id"] for n in record["graph"]["nodes"]} == set(spec.skill_symbols) | set(spec.routing_symbols)
    assert record["identification"]["routings"]["R0"]["identified"] is False
    # and what the candidates need: every candidate step's context and succession, as a graph record
    needed = {(e["source"], e["target"]) for e in record["candidates"]["edges"]}
    shown = {(e["source"], e["target"]) for e in record["graph"]["edges"]}
    assert needed and needed - shown  # the candidates use pairs the support never shows (drawn as x)


def test_identify_contradictory_corpus_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A trace that no hypothesis explains: one atomic trace whose answer was tampered with."""
    corpus = tmp_path / "c.jsonl"
    config = tmp_path / "sim.toml"
    config.write_text(
        '[spec]\nalphabet = 3\nlength = 2\nskills = ["reverse", "sort"]\nroutings = ["chain"]\n'
        "[design]\ntrain_depth = 1\ndeeper_depths = [2]\nn_sft = 2\nn_rl = 0\nn_unseen = 0\nn_deeper = 1\n"
    )
    assert main(["simulate", "--config", str(config), "--n", "40", "--out", str(corpus)]) == 0
    lines = corpus.read_text().splitlines()
    record = json.loads(lines[0])
    answer = record["states"][-1]
    flipped = ("b" if answer[0] != "b" else "c") + answer[1:]
    record["states"][-1] = flipped
    record["text"] = record["text"].rsplit(" ", 1)[0] + " " + flipped
    corpus.write_text("\n".join([json.dumps(record)] + lines[1:]) + "\n")
    design = tmp_path / "design.toml"
    design.write_text(
        '[spec]\nalphabet = 3\nlength = 2\nskills = ["reverse", "sort"]\nroutings = ["chain"]\n'
        f'[data]\ncorpus = "{corpus.name}"\n[candidates]\ndepth = 2\n'
    )
    assert main(["identify", "--design", str(design), "--class", "lib"]) == 2
    assert "no library module fits" in capsys.readouterr().err


def test_examples_list_names_every_example_by_kind(capsys: pytest.CaptureFixture[str]) -> None:
    from hlsm.examples import examples

    assert main(["examples", "list"]) == 0
    out = capsys.readouterr().out
    assert out.index("designs:") < out.index("training configs:") < out.index("sweep grids:")
    assert all(f"  {name} " in out for name in examples())
    assert max(len(line) for line in out.splitlines()) <= 120
    assert main(["identify", "--design", "example:c5_rl_outside", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["generalisation_set_size"] > 0


def test_the_help_examples_are_commands_the_parser_accepts(capsys: pytest.CaptureFixture[str]) -> None:
    import shlex

    from hlsm.app.cli import EXAMPLES, build_parser

    commands = [line.split("  ")[1] if line.count("  ") > 1 else line.strip() for line in EXAMPLES.splitlines()]
    commands = [c.strip() for c in commands if c.strip().startswith("hlsm ")]
    assert len(commands) == 8
    for command in commands:
        args = build_parser().parse_args(shlex.split(command)[1:])  # exits 2 on a drifted example
        assert callable(args.func)
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "examples:" in capsys.readouterr().out


def test_every_subcommand_help_ends_with_an_example_the_parser_accepts(capsys: pytest.CaptureFixture[str]) -> None:
    import shlex

    from hlsm.app.cli import COMMAND_EXAMPLES, build_parser
    from tests.app.test_bad_input import SUBCOMMANDS

    assert set(COMMAND_EXAMPLES) == set(SUBCOMMANDS)
    for command, example in COMMAND_EXAMPLES.items():
        assert f"{example} ".startswith(f"hlsm {command} ")
        args = build_parser().parse_args(shlex.split(example)[1:])  # exits 2 on a drifted example
        assert callable(args.func)
        with pytest.raises(SystemExit):
            main([*command.split(), "--help"])
        assert capsys.readouterr().out.rstrip().endswith(f"example:\n  {example}")


def test_identify_compares_regimes_in_one_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """c5 has c4's SFT with RL outside its support instead of inside: the table shows what that adds."""
    figure = tmp_path / "regimes.png"
    argv = ["identify", "--design", "example:c4_rl_inside", "--compare", "example:c5_rl_outside"]
    assert main([*argv, "--figure", str(figure)]) == 0
    out = capsys.readouterr().out
    assert "| `chain:sort > restart:sort` | not | in G |" in out
    assert "| **identified** | **62 / 142** | **96 / 140** |" in out
    assert "c5_rl_outside identifies 34 candidate(s) that c4_rl_inside does not:" in out
    assert figure.stat().st_size > 10_000 and json.loads(figure.with_suffix(".json").read_text())["class"] == "lib"
    assert main([*argv, "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert [r["identified"] for r in record["regimes"]] == [62, 96] and len(record["adds"]["c5_rl_outside"]) == 34
    # the other direction: a regime compared with itself adds nothing and differs nowhere
    assert main(["identify", "--design", "example:c4_rl_inside", "--compare", "example:c4_rl_inside", "--json"]) == 0
    same = json.loads(capsys.readouterr().out)
    assert same["adds"] == {"2:c4_rl_inside": []}
    assert all(len(set(r["verdicts"].values())) == 1 for r in same["rows"])
    # regimes of two libraries are refused
    assert main(["identify", "--design", "example:c4_rl_inside", "--compare", "example:fit_tiny"]) == 2
    assert "another [spec]" in capsys.readouterr().err
