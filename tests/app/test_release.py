"""What a release carries: one version everywhere, the license, a citation file that names the paper."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest

import hlsm
from hlsm.app.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_one_version_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"hlsm {hlsm.__version__}"
    assert importlib.metadata.version("hlsm") == hlsm.__version__  # pyproject reads hlsm.__version__
    assert 'dynamic = ["version"]' in (ROOT / "pyproject.toml").read_text()
    assert f"## {hlsm.__version__} " in (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^version: {re.escape(hlsm.__version__)}$", (ROOT / "CITATION.cff").read_text(), re.M)


def test_license_and_citation_files() -> None:
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    text = (ROOT / "CITATION.cff").read_text()
    for key in ("cff-version: 1.2.0", "message:", "title:", "authors:", "references:", "arXiv:2606.18089"):
        assert key in text
    assert "## Citing" in (ROOT / "README.md").read_text()
