"""The packaged examples (hlsm.examples): names, ``example:NAME`` wherever a file is read, copies."""

from __future__ import annotations

from pathlib import Path

import pytest

from hlsm.config import load_toml
from hlsm.examples import CONFIGS, DESIGNS, ExampleError, copy_examples, example_path, examples, resolve
from hlsm.io import read_text


def test_every_toml_of_the_example_folders_is_an_example_of_its_kind() -> None:
    found = examples()
    files = sorted(DESIGNS.glob("*.toml")) + sorted(CONFIGS.glob("*.toml"))
    assert sorted(e.path for e in found.values()) == sorted(files)
    kinds = {name: e.kind for name, e in found.items()}
    assert kinds["c2_interfaces"] == "design" and kinds["sft_tiny"] == "config" and kinds["sweep_fit"] == "grid"
    assert found["rl_tiny"].usage == "hlsm train rl --config example:rl_tiny"
    assert found["sft_cpu"].usage == "hlsm train sft --config example:sft_cpu"
    assert all(e.summary and not e.summary.startswith("#") for e in found.values())


def test_example_names_resolve_to_the_packaged_files() -> None:
    assert example_path("fit_tiny") == DESIGNS / "fit_tiny.toml" == example_path("example:fit_tiny")
    assert resolve("example:sft_tiny") == CONFIGS / "sft_tiny.toml"
    assert resolve("runs/x.toml") == Path("runs/x.toml")  # a plain path is left alone
    assert read_text("example:fit_tiny") == (DESIGNS / "fit_tiny.toml").read_text()
    assert load_toml("example:sweep_fit")["sweep"]["base"] == "example:fit_control"


def test_an_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ExampleError, match="no example named 'c9'; the examples are c1_dead_step, c2_interfaces"):
        read_text("example:c9")


def test_copy_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    assert copy_examples(["fit_tiny"], tmp_path / "new") == [tmp_path / "new" / "fit_tiny.toml"]
    mine = tmp_path / "new" / "fit_tiny.toml"
    mine.write_text("# my edit\n")
    with pytest.raises(ExampleError, match="already exist"):
        copy_examples(["fit_tiny", "sft_tiny"], tmp_path / "new")
    assert mine.read_text() == "# my edit\n" and not (tmp_path / "new" / "sft_tiny.toml").exists()  # nothing copied
    copy_examples(["fit_tiny"], tmp_path / "new", overwrite=True)
    assert mine.read_text() == example_path("fit_tiny").read_text()
    everything = copy_examples([], tmp_path / "all")
    assert sorted(p.name for p in everything) == sorted(e.path.name for e in examples().values())


def test_a_name_in_both_folders_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hlsm.examples

    for kind in ("designs", "configs"):
        (tmp_path / kind).mkdir()
        (tmp_path / kind / "same.toml").write_text("# one\n")
    monkeypatch.setattr(hlsm.examples, "FOLDERS", {"design": tmp_path / "designs", "config": tmp_path / "configs"})
    with pytest.raises(ExampleError, match="two examples are named 'same'"):
        examples()
