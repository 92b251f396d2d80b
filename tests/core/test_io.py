"""Written results get normal file modes; text inputs are read through one function that names the file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from hlsm.errors import InputError, shorten
from hlsm.io import atomic_write, read_text, write_json, write_text


def test_results_get_the_mode_of_a_plain_open(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "a.txt", "x")
        write_json(tmp_path / "b.json", {"a": 1})
        atomic_write(tmp_path / "c.pt", lambda f: torch.save({"w": torch.zeros(2)}, f), mode="wb")
        with open(tmp_path / "plain.txt", "w") as f:
            f.write("x")
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
        assert set(modes.values()) == {0o644}, modes  # readable by a trainer running as another user
        os.umask(0o077)
        write_text(tmp_path / "private.txt", "x")
        assert stat.S_IMODE((tmp_path / "private.txt").stat().st_mode) == 0o600  # the umask is respected
    finally:
        os.umask(old)


def test_read_text_names_the_file_and_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "ok.toml").write_text("a = 'é'\n", encoding="utf-8")
    assert read_text(tmp_path / "ok.toml") == "a = 'é'\n"
    (tmp_path / "latin.toml").write_bytes("a = 'é'\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"design file '.*latin.toml' is not UTF-8 text \(byte 0xe9 at offset 5\)"):
        read_text(tmp_path / "latin.toml", "design file")
    with pytest.raises(InputError, match="does not exist"):
        read_text(tmp_path / "missing.toml")
    with pytest.raises(InputError, match="is a folder, not a file"):
        read_text(tmp_path)


def test_shorten_keeps_both_ends_and_says_how_much_was_cut() -> None:
    assert shorten("abc") == "abc"
    long = "start " + "x" * 10_000 + " end"
    short = shorten(long, 100)
    assert len(short) < 140 and short.startswith("start ") and short.endswith(" end") and "characters cut" in short
