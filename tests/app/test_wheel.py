"""hlsm as a user installs it: the wheel in a fresh virtual environment, used from an empty folder.

The module's fixture builds the sdist and, from it, the wheel (``python -m build``), creates a
virtual environment outside the checkout and installs the wheel there with the pinned constraints.
Every command then runs from an empty folder with that environment's ``hlsm``: nothing of the
checkout is on the path, so a file missing from the package data, an experiment that reads the
checkout, or an undeclared dependency fails here. About 1.5 minutes, most of it ``pip install``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from hlsm import __version__
from hlsm.examples import examples

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.release  # pip needs the package registry: make test-release (CI), not make test


@dataclass(frozen=True)
class Installed:
    """A virtual environment with the built wheel installed, and an empty folder to work in."""

    venv: Path
    work: Path
    wheel: Path
    sdist: Path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["MPLBACKEND"] = "Agg"
        return env

    def hlsm(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``hlsm ARGS`` from the empty folder; a non-zero exit fails with the command's output."""
        proc = subprocess.run(
            [str(self.venv / "bin" / "hlsm"), *args],
            cwd=self.work,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert proc.returncode == 0, f"hlsm {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        return proc


def _run(command: list[str], cwd: Path, timeout: float = 600) -> None:
    proc = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{' '.join(command)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(ROOT)], cwd=base)
    (wheel,) = dist.glob("hlsm-*.whl")
    (sdist,) = dist.glob("hlsm-*.tar.gz")
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=base)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    _run([*pip, "-c", str(ROOT / "constraints.txt"), str(wheel)], cwd=base, timeout=900)
    work = base / "empty"
    work.mkdir()
    yield Installed(venv, work, wheel, sdist)
    shutil.rmtree(venv, ignore_errors=True)  # about 1.5 GB; pytest keeps its last three temp folders


def test_wheel_and_sdist_carry_the_examples_and_the_experiments(installed: Installed) -> None:
    shipped = {f"hlsm/examples/{e.path.parent.name}/{e.path.name}" for e in examples().values()}
    sources = sorted((ROOT / "sims").glob("*.py"))
    assert len(sources) > 10
    sims = {f"hlsm/sims/{p.name}" for p in sources}  # the top-level sims/ ships as hlsm.sims
    wheel = zipfile.ZipFile(installed.wheel)
    in_wheel = set(wheel.namelist())
    assert shipped | sims <= in_wheel, sorted((shipped | sims) - in_wheel)
    assert not [n for n in in_wheel if n.startswith("sims/")], "sims/ must ship only as hlsm.sims"
    with tarfile.open(installed.sdist) as tar:
        prefix = f"hlsm-{__version__}/"
        in_sdist = {n.removeprefix(prefix) for n in tar.getnames()}
    extras = {"LICENSE", "README.md", "CHANGELOG.md", "CITATION.cff", "pyproject.toml", "constraints.txt", "Makefile"}
    checkout = {f"sims/{p.name}" for p in sources}
    assert shipped | checkout | extras | {"tests/app/test_wheel.py", "theory/README.md", "docs/index.md"} <= in_sdist
    # the installed hlsm.sims is the checkout's sims/, file for file
    where = subprocess.run(
        [
            str(installed.venv / "bin" / "python"),
            "-c",
            "import hlsm.sims, pathlib; print(pathlib.Path(hlsm.sims.__file__).parent)",
        ],
        cwd=installed.work,
        env=installed.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.strip()
    installed_sims = Path(where)
    assert installed_sims.parts[-2:] == ("hlsm", "sims") and "site-packages" in installed_sims.parts
    assert sorted(p.name for p in installed_sims.glob("*.py")) == [p.name for p in sources]
    assert all((installed_sims / p.name).read_bytes() == p.read_bytes() for p in sources)
    assert installed.wheel.name == f"hlsm-{__version__}-py3-none-any.whl"


def test_the_installed_package_is_the_wheel_not_the_checkout(installed: Installed) -> None:
    assert installed.hlsm("--version").stdout.strip() == f"hlsm {__version__}"
    where = subprocess.run(
        [str(installed.venv / "bin" / "python"), "-c", "import hlsm, hlsm.examples; print(hlsm.examples.ROOT)"],
        cwd=installed.work,
        env=installed.env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(installed.venv) and not Path(where).is_relative_to(ROOT)


def test_examples_list_show_copy(installed: Installed) -> None:
    listed = json.loads(installed.hlsm("examples", "list", "--json").stdout)
    assert [e["name"] for e in listed] == list(examples())
    assert installed.hlsm("examples", "show", "fit_tiny").stdout == examples()["fit_tiny"].path.read_text()
    installed.hlsm("examples", "copy", "fit_tiny", "sft_tiny", "--to", "mine")
    assert sorted(p.name for p in (installed.work / "mine").iterdir()) == ["fit_tiny.toml", "sft_tiny.toml"]
    installed.hlsm("identify", "--design", "mine/fit_tiny.toml")


def test_every_shipped_config_loads(installed: Installed) -> None:
    """The training configs and the sweep grid parse and validate in the installed package (the cpu
    configs train for minutes; sft_tiny and rl_tiny are trained below, the grid runs in a slow test)."""
    script = (
        "from hlsm.examples import examples\n"
        "from hlsm.lm.sft_config import SFTConfig\nfrom hlsm.lm.rl_config import RLConfig\n"
        "from hlsm.app.sweep import load_grid\n"
        "for e in examples().values():\n"
        "    if e.kind == 'grid':\n        load_grid(f'example:{e.name}')\n"
        "    elif e.kind == 'config':\n"
        "        (RLConfig if e.name.startswith('rl_') else SFTConfig).from_toml(f'example:{e.name}')\n"
        "    print(e.name)\n"
    )
    proc = subprocess.run(
        [str(installed.venv / "bin" / "python"), "-c", script],
        cwd=installed.work,
        env=installed.env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == list(examples())


def test_identify_on_every_shipped_design(installed: Installed) -> None:
    designs = [e.name for e in examples().values() if e.kind == "design"]
    assert len(designs) == 8
    for name in designs:
        result = json.loads(installed.hlsm("identify", "--design", f"example:{name}", "--json").stdout)
        assert result["generalisation_set_size"] <= result["unseen_total"], name


def test_fit_on_the_control_example(installed: Installed) -> None:
    fit = installed.hlsm("fit", "--design", "example:fit_control", "--out", "runs/fit_control", "--quiet", "--json")
    summary = json.loads(fit.stdout)
    # the built control: restart (R1) only at step 1 and shift_down (S4) never shown stay free, and the
    # fit's confident answers agree with the exact checker on every candidate
    assert summary["symbols_not_identified"] == ["S4", "R1"] and summary["checker_agreement"] == 1.0
    assert (installed.work / "runs" / "fit_control" / "metrics.json").exists()


def test_quickstart_and_training_configs(installed: Installed) -> None:
    installed.hlsm("quickstart", "--scale", "tiny")
    assert "## " in (installed.work / "runs" / "quickstart" / "report.md").read_text()
    installed.hlsm("train", "sft", "--config", "example:sft_tiny", "--out", "runs/sft_tiny")
    installed.hlsm("train", "rl", "--config", "example:rl_tiny", "--init", "runs/sft_tiny", "--out", "runs/rl_tiny")
    assert (installed.work / "runs" / "rl_tiny" / "checkpoint.pt").exists()


def test_reproduce_from_the_installed_package(installed: Installed) -> None:
    installed.hlsm("reproduce", "--scale", "tiny", "--only", "trace_distributions", "vi_vs_checker")
    text = (installed.work / "docs" / "results.md").read_text()
    assert "## Trace distributions of the default supports" in text and "## The exact and Bayesian views" in text
    assert (installed.work / "runs" / "reproduce-tiny" / "vi_vs_checker" / "results.json").exists()


@pytest.mark.slow
def test_fit_recovers_the_identifiable_example(installed: Installed) -> None:
    summary = json.loads(
        installed.hlsm("fit", "--design", "example:fit_tiny", "--out", "runs/fit_tiny", "--quiet", "--json").stdout
    )
    assert summary["binding_accuracy"] == 1.0 and summary["checker_agreement"] == 1.0


@pytest.mark.slow
def test_sweep_over_the_shipped_grid(installed: Installed) -> None:
    installed.hlsm("sweep", "--grid", "example:sweep_fit", timeout=900)
    assert len((installed.work / "runs" / "sweep_fit" / "results.csv").read_text().splitlines()) == 7


@pytest.mark.slow
def test_every_experiment_reproduces_at_the_tiny_scale(installed: Installed) -> None:
    installed.hlsm("reproduce", "--scale", "tiny", "--runs", "runs/all-tiny", "--docs", "all-docs", timeout=3600)
    outcomes = json.loads((installed.work / "runs" / "all-tiny" / "outcomes.json").read_text())
    assert [o["status"] for o in outcomes] == ["ran"] * len(outcomes) and len(outcomes) == 11
