"""The API reference builds and covers the public surface; the docs' relative links resolve."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

import hlsm

DOCS = Path(__file__).resolve().parents[2] / "docs"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def load_builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_build_reference", DOCS / "build_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_reference_covers_public_api(tmp_path: Path) -> None:
    before = set(sys.modules)
    pages = load_builder().build(tmp_path)
    experiments = [m for m in set(sys.modules) - before if m.startswith("hlsm.sims.")]
    assert not experiments, "the builder must not import the experiments"
    assert (tmp_path / "index.md") in pages and (tmp_path / "hlsm.md") in pages
    surface = (tmp_path / "hlsm.md").read_text()
    missing = [name for name in hlsm.__all__ if f"`{name}`" not in surface]
    assert not missing, f"public names missing from the reference: {missing}"


def _markdown_files() -> list[Path]:
    return sorted(DOCS.glob("*.md")) + sorted((DOCS / "howto").glob("*.md"))


@pytest.mark.parametrize("page", _markdown_files(), ids=lambda p: str(p.relative_to(DOCS)))
def test_relative_links_resolve(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # links inside code blocks are not links
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue  # external URL or in-page anchor
        path = (page.parent / target.split("#")[0]).resolve()
        if not path.exists():
            broken.append(target)
    assert not broken, f"{page.name}: broken relative link(s) {broken}"


def test_committed_reference_is_up_to_date(tmp_path: Path) -> None:
    """docs/reference/ is what the builder writes now: a changed docstring needs `python docs/build_reference.py`."""
    load_builder().build(tmp_path)
    built = {p.name: p.read_text() for p in tmp_path.glob("*.md")}
    committed = {p.name: p.read_text() for p in (DOCS / "reference").glob("*.md")}
    assert sorted(built) == sorted(committed), "run `python docs/build_reference.py` (pages added or removed)"
    stale = [name for name in built if built[name] != committed[name]]
    assert not stale, f"run `python docs/build_reference.py`: stale pages {stale}"
