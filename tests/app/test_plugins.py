"""Custom modules from the command line: ``--plugin FILE`` and the ``hlsm.modules`` entry-point group."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN = """
import torch
import hlsm

def double_first(x, alphabet):
    return torch.cat([(2 * x[:, :1]) % alphabet, x[:, 1:]], 1)

hlsm.register_skill("double_first", double_first, "double the first symbol", bijective=False)
"""


def _hlsm(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hlsm", *args], capture_output=True, text=True, cwd=cwd, timeout=120, env=env
    )


def test_a_plugin_file_registers_modules_for_the_command(tmp_path: Path) -> None:
    (tmp_path / "mine.py").write_text(PLUGIN)
    listed = _hlsm("modules", "--json", "--plugin", "mine.py", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    names = {m["name"]: m for m in json.loads(listed.stdout)["modules"]}
    assert names["double_first"]["symbol"] == "SDoubleFirst"
    out = tmp_path / "c.jsonl"
    run = _hlsm(
        "simulate",
        "--plugin",
        "mine.py",
        "--skills",
        "reverse,double_first",
        "--n",
        "4",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert "SDoubleFirst" in out.read_text()
    without = _hlsm("simulate", "--skills", "reverse,double_first", "--n", "4", "--out", str(out), cwd=tmp_path)
    assert without.returncode == 2 and "unknown skill 'double_first'" in without.stderr


def test_an_entry_point_registers_modules_for_every_command(tmp_path: Path) -> None:
    """A distribution on the path that declares an ``hlsm.modules`` entry point (no install needed to test)."""
    (tmp_path / "my_modules.py").write_text(PLUGIN)
    dist = tmp_path / "my_modules-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-modules\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[hlsm.modules]\nmine = my_modules\n")
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path)}
    listed = _hlsm("modules", "--json", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    assert "double_first" in {m["name"] for m in json.loads(listed.stdout)["modules"]}


def test_a_broken_plugin_is_one_message(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    (tmp_path / "liar.py").write_text(
        "import hlsm\nhlsm.register_skill('liar', lambda x, a: x.flip(0), 'mixes rows', bijective=False)\n"
    )
    for name, expected in (("broken.py", "failed: RuntimeError: boom"), ("liar.py", "mixes rows of the batch")):
        run = _hlsm("modules", "--plugin", name, cwd=tmp_path)
        assert run.returncode == 2 and expected in run.stderr and "Traceback" not in run.stderr


def test_loading_is_once_per_process_and_remembered_for_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hlsm.plugins as plugins
    from hlsm.modules import unregister

    monkeypatch.setattr(plugins, "_LOADED_FILES", [])
    monkeypatch.setattr(plugins, "_PLUGIN_MODULES", set())
    plugin = tmp_path / "once.py"
    plugin.write_text(PLUGIN.replace("double_first", "once_first"))
    try:
        assert plugins.load_plugins([plugin, tmp_path / "." / "once.py"], entry_points=False) == [str(plugin)]
        assert plugins.load_plugins([plugin], entry_points=False) == []  # a second load would re-register
        assert plugins.plugin_files() == (str(plugin.resolve()),)
        assert plugins.plugin_modules() == {"once_first"}
    finally:
        unregister("once_first")


@pytest.mark.parametrize("backend", ["local", pytest.param("ray", marks=[pytest.mark.slow, pytest.mark.ray])])
def test_sweep_workers_load_the_plugins(tmp_path: Path, backend: str) -> None:
    """Cells on a pool of two processes (or Ray tasks) use a plugin's skill: each worker loads the file
    (a marker per process) before its first cell."""
    if backend == "ray":
        pytest.importorskip("ray")
    (tmp_path / "mine.py").write_text(
        PLUGIN + "import os, pathlib\npathlib.Path(__file__).with_name(f'loaded-{os.getpid()}').touch()\n"
    )
    (tmp_path / "design.toml").write_text(
        '[spec]\nalphabet = 3\nlength = 2\nskills = ["reverse", "double_first"]\nroutings = ["chain", "restart"]\n'
        '[sft]\natomic = true\nprograms = ["chain:reverse > restart:double_first"]\n[candidates]\ndepth = 2\n'
    )
    (tmp_path / "grid.toml").write_text(
        f'[sweep]\nkind = "identify"\nbase = "design.toml"\nout = "out"\nworkers = 2\nbackend = "{backend}"\n'
        '[grid]\n"data.inputs" = [2, 3, 4, 5]\n'
    )
    run = _hlsm("sweep", "--plugin", "mine.py", "--grid", "grid.toml", cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "4 cells: 4 ran" in run.stdout
    rows = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [r["status"] for r in rows] == ["done"] * 4 and all(r["unseen_total"] > 0 for r in rows)
    markers = len(list(tmp_path.glob("loaded-*")))  # the command and each worker process once
    assert markers == 3 if backend == "local" else markers >= 2


# -- the boundary: a plugin that fails at use, exits, or prints


def plugin(body: str, *register: str) -> str:
    """A plugin file: ``body`` (functions) and the registration of each named skill."""
    lines = [f'hlsm.register_skill("{n}", {n}, "{n}", bijective=True)' for n in register]
    return "import sys\nimport torch\nimport hlsm\n\n" + body + "\n" + "\n".join(lines) + "\n"


PICKY = """
def picky(x, alphabet):
    print("picky was called")
    if x.shape[0] > 4096 and bool((x[:, 0] == 2).any()):  # the registration probe's batches pass
        raise ValueError("I cannot take a 2 first")
    return (x + 2) % alphabet
"""
PICKY_ROWS = """
def picky_rows(x, alphabet):
    if bool((x[:, 0] == 2).any()):
        raise ValueError("I cannot take a 2 first")
    return (x + 2) % alphabet
"""
LEAVING = """
def leaving(x, alphabet):
    if x.shape[0] > 4096:
        sys.exit(0)
    return (x + 2) % alphabet
"""
CHATTY = """
def chatty(x, alphabet):
    print("chatty says hello")
    return (x + 2) % alphabet
"""


def test_a_plugin_failing_at_use_is_one_message_naming_the_file_the_module_and_an_input(tmp_path: Path) -> None:
    (tmp_path / "mine.py").write_text(plugin(PICKY, "picky"))
    run = _hlsm("simulate", "--plugin", "mine.py", "--skills", "reverse,picky", "--n", "20000", cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    error = [line for line in run.stderr.splitlines() if "error:" in line]
    assert len(error) == 1 and "Traceback" not in run.stderr
    assert "skill 'picky' (plugin file 'mine.py') raised ValueError: I cannot take a 2 first" in error[0]
    assert "(no single row of it fails alone)" in error[0]  # it fails on batches only: said so
    # one that fails on single rows: the probe's random batch holds a 2 first, refused at registration
    (tmp_path / "rows.py").write_text(plugin(PICKY_ROWS, "picky_rows"))
    run = _hlsm("simulate", "--plugin", "rows.py", "--skills", "reverse,picky_rows", "--n", "200", cwd=tmp_path)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "plugin file 'rows.py'" in run.stderr and "skill 'picky_rows'" in run.stderr


MIXING = """
def mixing(x, alphabet):
    return x.roll(1, 0) if x.shape[0] > 1000 else (x + 2) % alphabet  # mixes rows in large batches only
"""


def test_a_module_that_mixes_rows_only_in_large_batches_is_refused_at_registration(tmp_path: Path) -> None:
    (tmp_path / "mixing.py").write_text(plugin(MIXING, "mixing"))
    run = _hlsm("modules", "--plugin", "mixing.py", cwd=tmp_path)
    assert run.returncode == 2 and "skill 'mixing'" in run.stderr and "mixes rows of the batch" in run.stderr


def test_a_plugin_that_exits_is_an_error_not_a_silent_success(tmp_path: Path) -> None:
    (tmp_path / "exits.py").write_text("import sys\nsys.exit(0)\n")
    run = _hlsm("modules", "--plugin", "exits.py", cwd=tmp_path)
    assert run.returncode == 2 and "plugin file 'exits.py' called sys.exit(0) while loading" in run.stderr
    (tmp_path / "leaves.py").write_text(plugin(LEAVING, "leaving"))
    run = _hlsm("simulate", "--plugin", "leaves.py", "--skills", "reverse,leaving", "--n", "20000", cwd=tmp_path)
    assert run.returncode == 2 and "skill 'leaving' (plugin file 'leaves.py') called sys.exit(0)" in run.stderr


def test_a_plugins_prints_go_to_stderr_under_its_name_and_json_output_stays_json(tmp_path: Path) -> None:
    (tmp_path / "mine.py").write_text(plugin(CHATTY, "chatty"))
    run = _hlsm("simulate", "--plugin", "mine.py", "--skills", "reverse,chatty", "--n", "50", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[-1])["split"]  # the summary line is JSON
    assert "[skill 'chatty', plugin file 'mine.py'] chatty says hello" in run.stderr
    (tmp_path / "loud.py").write_text("print('loading my plugin')\n" + plugin(CHATTY, "chatty"))
    listed = _hlsm("modules", "--json", "--plugin", "loud.py", cwd=tmp_path)
    assert listed.returncode == 0 and "loading my plugin" in listed.stderr
    assert "chatty" in {m["name"] for m in json.loads(listed.stdout)["modules"]}


SWAP_ENDS = """
def swap_ends(x, alphabet):
    y = x.clone()
    y[:, 0], y[:, -1] = x[:, -1], x[:, 0]
    return y
"""


def test_slips_are_one_line_warnings_that_can_be_silenced(tmp_path: Path) -> None:
    """Both ways: swap_ends is reverse at n = 3 (two symbols for one module: warned) but not at n = 4
    (no warning); a candidate that the SFT support shows is warned, a clean design is not."""
    (tmp_path / "ends.py").write_text(plugin(SWAP_ENDS, "swap_ends"))
    args = ["simulate", "--plugin", "ends.py", "--skills", "reverse,swap_ends", "--n", "20", "--alphabet", "4"]
    same = _hlsm(*args, "--length", "3", "--out", str(tmp_path / "a.jsonl"), cwd=tmp_path)
    assert same.returncode == 0, same.stderr
    warning = "hlsm simulate: warning: skill 'swap_ends' (plugin file 'ends.py') equals 'reverse' on every state"
    assert warning in same.stderr and "HLSM_IGNORE_SLIPS=1 silences it" in same.stderr
    other = _hlsm(*args, "--length", "4", "--out", str(tmp_path / "b.jsonl"), cwd=tmp_path)
    assert other.returncode == 0 and "warning" not in other.stderr
    quiet = _hlsm(
        *args, "--length", "3", "--out", str(tmp_path / "c.jsonl"), cwd=tmp_path,
        env={**os.environ, "HLSM_IGNORE_SLIPS": "1"},
    )  # fmt: skip
    assert quiet.returncode == 0 and "warning" not in quiet.stderr

    design = """
[spec]
alphabet = 3
length = 2
skills = ["reverse", "sort", "shift_up"]
routings = ["chain", "restart"]
[sft]
programs = ["reverse", "sort", "shift_up", "chain:sort > restart:reverse"]
[candidates]
programs = [CANDIDATES]
"""
    (tmp_path / "slip.toml").write_text(design.replace("CANDIDATES", '"chain:sort > restart:reverse"'))
    (tmp_path / "clean.toml").write_text(design.replace("CANDIDATES", '"chain:shift_up > restart:reverse"'))
    slip = _hlsm("identify", "--design", "slip.toml", cwd=tmp_path)
    assert slip.returncode == 0 and "candidate 'chain:sort > restart:reverse' is also an SFT program" in slip.stderr
    clean = _hlsm("identify", "--design", "clean.toml", cwd=tmp_path)
    assert clean.returncode == 0 and "warning" not in clean.stderr
