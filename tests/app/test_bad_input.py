"""Bad input to every ``hlsm`` subcommand: exit code 2, one message naming the input, no traceback,
no partial output file.

Each case of :data:`CASES` writes its (malformed) inputs into a fresh folder, runs ``hlsm.app.cli.main``
in-process from that folder and checks the contract of :mod:`hlsm.app.cli`: exit code 2 (argparse's
usage errors included), a message on stderr containing the expected text (the file path or the key,
and where the case allows it the fix), no ``Traceback``, and no new file left behind.
:data:`SUBCOMMANDS` must list every subcommand of ``hlsm --help``; a new one without a case fails.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from hlsm.app.cli import build_parser, main
from hlsm.examples import CONFIGS

SPEC = """
[spec]
alphabet = 3
length = 2
skills = ["reverse", "sort", "shift_up"]
routings = ["chain", "restart"]
"""

DESIGN = """
[design]
train_depth = 2
deeper_depths = [3]
n_sft = 2
n_rl = 1
n_unseen = 1
n_deeper = 1
"""

IDENTIFY = (
    SPEC
    + """
[sft]
programs = ["reverse", "sort", "chain:sort > restart:reverse"]

[candidates]
programs = ["chain:shift_up > restart:reverse"]
"""
)

CORPUS_LINE = (
    '{"text": "ba | R0 S3 R1 S0 > cb > ab", "split": "sft", "depth": 2, "program": "chain:shift_up > '
    'restart:reverse", "routing": [0, 1], "skill": [2, 0], "states": ["ba", "cb", "ab"], "mask": [true, true]}'
)

SFT = (CONFIGS / "sft_tiny.toml").read_text()
RL = (CONFIGS / "rl_tiny.toml").read_text()

SUBCOMMANDS = (
    "modules",
    "simulate",
    "identify",
    "fit",
    "quickstart",
    "examples list",
    "examples show",
    "examples copy",
    "train sft",
    "train rl",
    "evaluate",
    "probe",
    "reproduce",
    "sweep",
    "bench",
    "export",
)


def write(tmp: Path, name: str, text: str) -> str:
    path = tmp / name
    path.write_text(text)
    return str(path)


def truncated_pt(tmp: Path, name: str = "truncated.pt") -> str:
    buffer = io.BytesIO()
    torch.save({"version": 1, "model": {"w": torch.zeros(64)}}, buffer)
    path = tmp / name
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return str(path)


def foreign_pt(tmp: Path) -> str:
    path = tmp / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, path)
    return str(path)


def blocked(tmp: Path) -> str:
    """An output path under a regular file: it cannot be created."""
    (tmp / "file").write_text("a regular file\n")
    return str(tmp / "file" / "out")


def binary(tmp: Path, name: str = "g.bin") -> str:
    """A file of random bytes (not UTF-8 text)."""
    path = tmp / name
    path.write_bytes(bytes([0xBB, 0xFF, 0x00, 0xC3]) * 1024)
    return str(path)


def fifo(tmp: Path, name: str = "pipe") -> str:
    """A FIFO where an output file should go."""
    os.mkfifo(tmp / name)
    return str(tmp / name)


def linked(tmp: Path, name: str) -> str:
    """A folder holding ``name`` as a symbolic link to a file of the user's."""
    (tmp / "own.txt").write_text("mine\n")
    (tmp / "to").mkdir(exist_ok=True)
    (tmp / "to" / name).symlink_to(tmp / "own.txt")
    return str(tmp / "to")


@dataclass(frozen=True)
class Case:
    id: str
    argv: Callable[[Path], list[str]]
    expected: str
    """Text the message must contain; ``{tmp}`` stands for the case's folder."""


CASES: list[Case] = [
    # -- modules
    Case("modules-alphabet-zero", lambda t: ["modules", "--alphabet", "0"], "expected a positive number"),
    Case("modules-length-text", lambda t: ["modules", "--length", "six"], "expected a whole number, got 'six'"),
    # -- inputs nobody listed (kinds: undecodable text, unallocatable sizes, silent hiding, unbounded
    # enumeration, empty paths, an empty resume, echoed megabytes)
    Case("simulate-binary-config", lambda t: ["simulate", "--config", binary(t)], "is not UTF-8 text (byte 0xbb"),
    # -- output targets that are not regular files (kinds: a device, a FIFO, a folder, a link)
    Case("simulate-out-device", lambda t: ["simulate", "--n", "5", "--out", "/dev/null"], "is a character device"),
    Case(
        "simulate-out-fifo", lambda t: ["simulate", "--n", "5", "--out", fifo(t)], "'{tmp}/pipe' exists and is a FIFO"
    ),
    Case("simulate-out-folder", lambda t: ["simulate", "--n", "5", "--out", str(t)], "exists and is a folder"),
    Case(
        "examples-copy-over-link",
        lambda t: ["examples", "copy", "fit_tiny", "--to", linked(t, "fit_tiny.toml"), "--overwrite"],
        "fit_tiny.toml' exists and is a symbolic link",
    ),
    Case("identify-binary-design", lambda t: ["identify", "--design", binary(t)], "is not UTF-8 text"),
    Case(
        "fit-binary-data",
        lambda t: ["fit", "--design", write(t, "d.toml", SPEC + DESIGN), "--data", binary(t), "--out", str(t / "o")],
        "corpus '{tmp}/g.bin' is not UTF-8 text",
    ),
    Case(
        "simulate-huge-n",
        lambda t: ["simulate", "--config", write(t, "c.toml", "[simulate]\nn = 9223372036854775807\n")],
        "would take about",
    ),
    Case("simulate-steps-beyond-depth", lambda t: ["simulate", "--exposure", "steps:9"], "lists step(s) [9]"),
    Case(
        "identify-enumeration-too-large",
        lambda t: ["identify", "--design", write(t, "d.toml", "[sft]\natomic = true\n[candidates]\ndepth = 3\n")],
        "13,824,000 of them",
    ),
    Case(
        "fit-empty-out", lambda t: ["fit", "--design", write(t, "d.toml", SPEC + DESIGN), "--out", ""], "--out is empty"
    ),
    Case(
        "fit-resume-nothing",
        lambda t: ["fit", "--design", write(t, "d.toml", SPEC + DESIGN), "--out", str(t / "o"), "--resume"],
        "holds no fit_state.pt",
    ),
    Case("evaluate-empty-ckpt", lambda t: ["evaluate", "--ckpt", " "], "--ckpt is empty"),
    Case("bench-unknown-fit-scale", lambda t: ["bench", "fit", "--scale", "huge"], "scales 'tiny' and 'default'"),
    Case(
        "export-binary-design",
        lambda t: ["export", "--design", binary(t), "--format", "trl", "--out", str(t / "x")],
        "is not UTF-8 text",
    ),
    Case(
        "export-empty-out", lambda t: ["export", "--design", "d.toml", "--format", "trl", "--out", ""], "--out is empty"
    ),
    Case("sft-binary-config", lambda t: ["train", "sft", "--config", binary(t)], "is not UTF-8 text"),
    Case("probe-empty-out", lambda t: ["probe", "--ckpt", "x", "--out", ""], "--out is empty"),
    Case(
        "modules-plugin-missing",
        lambda t: ["modules", "--plugin", str(t / "nope.py")],
        "plugin file '{tmp}/nope.py' does not exist",
    ),
    Case(
        "modules-plugin-not-python",
        lambda t: ["modules", "--plugin", write(t, "p.txt", "x\n")],
        "must be a Python file",
    ),
    Case("modules-plugin-binary", lambda t: ["modules", "--plugin", binary(t, "p.py")], "is not UTF-8 text"),
    Case(
        "sweep-ray-address-without-client",  # without Ray installed: the install hint; with it: the client hint
        lambda t: [
            "sweep",
            "--grid",
            write(
                t,
                "g.toml",
                f'[sweep]\nkind = "identify"\nbase = "{write(t, "d.toml", SPEC + DESIGN)}"\nout = "{t}/o"\n'
                'backend = "ray"\naddress = "ray://127.0.0.1:1"\n[grid]\n"candidates.depth" = [1]\n',
            ),
        ],
        "Ray",
    ),
    Case(
        "identify-megabyte-input",
        lambda t: ["identify", "--design", write(t, "d.toml", '[sft]\nprograms = ["' + "x" * 1_000_000 + '"]\n')],
        "characters cut",
    ),
    # -- simulate
    Case("simulate-unknown-skill", lambda t: ["simulate", "--skills", "reverse,nosuch"], "nosuch"),
    Case("simulate-unknown-routing", lambda t: ["simulate", "--routings", "teleport"], "teleport"),
    Case(
        "simulate-unknown-section",
        lambda t: ["simulate", "--config", write(t, "c.toml", "[sampler]\nn = 3\n")],
        "unknown section(s) ['sampler']",
    ),
    Case(
        "simulate-unknown-key",
        lambda t: ["simulate", "--config", write(t, "c.toml", SPEC + "colour = 3\n")],
        "colour",
    ),
    Case(
        "simulate-wrong-type",
        lambda t: ["simulate", "--config", write(t, "c.toml", SPEC + DESIGN + "[simulate]\nn = 'many'\n")],
        "[simulate] key 'n'",
    ),
    Case("simulate-spec-not-table", lambda t: ["simulate", "--config", write(t, "c.toml", "spec = 5\n")], "[spec]"),
    Case(
        "simulate-design-not-table",
        lambda t: ["simulate", "--config", write(t, "c.toml", "design = 'big'\n" + SPEC)],
        "[design]",
    ),
    Case(
        "simulate-impossible-split-sizes",
        lambda t: ["simulate", "--config", write(t, "c.toml", SPEC + "[design]\nn_sft = 500\n"), "--n", "5"],
        "lower the split sizes",
    ),
    Case("simulate-length-one", lambda t: ["simulate", "--length", "1"], "needs A >= 2 and n >= 2"),
    Case(
        "simulate-alphabet-too-large", lambda t: ["simulate", "--alphabet", "30"], "alphabet must be between 2 and 26"
    ),
    Case("simulate-bad-epsilon", lambda t: ["simulate", "--epsilon", "1.5"], "epsilon must be in [0, 1]"),
    Case("simulate-bad-toml", lambda t: ["simulate", "--config", write(t, "c.toml", "[spec\n")], "is not valid TOML"),
    Case("simulate-missing-config", lambda t: ["simulate", "--config", str(t / "nope.toml")], "nope.toml"),
    Case(
        "simulate-unwritable-out",
        lambda t: ["simulate", "--config", write(t, "c.toml", SPEC + DESIGN), "--n", "5", "--out", blocked(t)],
        "{tmp}/file",
    ),
    Case("simulate-bad-exposure", lambda t: ["simulate", "--exposure", "half", "--n", "5"], "exposure 'half'"),
    Case("simulate-bad-split", lambda t: ["simulate", "--splits", "train", "--n", "5"], "train"),
    # -- identify
    Case("identify-missing-design", lambda t: ["identify", "--design", str(t / "d.toml")], "{tmp}/d.toml"),
    Case(
        "identify-unknown-program",
        lambda t: ["identify", "--design", write(t, "d.toml", IDENTIFY.replace("chain:sort", "chain:sorted"))],
        "unknown skill 'sorted'",
    ),
    Case(
        "identify-unknown-section",
        lambda t: ["identify", "--design", write(t, "d.toml", IDENTIFY + "[extra]\nx = 1\n")],
        "unknown section(s) ['extra']",
    ),
    Case(
        "identify-wrong-type",
        lambda t: ["identify", "--design", write(t, "d.toml", IDENTIFY + "[data]\ninputs = 2.5\n")],
        "inputs",
    ),
    Case(
        "identify-section-not-table",
        lambda t: ["identify", "--design", write(t, "d.toml", "spec = [1, 2]\n")],
        "[spec]",
    ),
    Case(
        "identify-truncated-corpus",
        lambda t: (
            [
                "identify",
                "--design",
                write(t, "d.toml", IDENTIFY + '[data]\ncorpus = "c.jsonl"\n'),
                "--class",
                "lib",
            ]
            + [write(t, "c.jsonl", CORPUS_LINE + "\n" + CORPUS_LINE[:40])][:0]
        ),
        "c.jsonl",
    ),
    Case(
        "identify-corrupted-corpus",
        lambda t: (
            ["identify", "--design", write(t, "d.toml", IDENTIFY + '[data]\ncorpus = "c.jsonl"\n')]
            + [write(t, "c.jsonl", CORPUS_LINE.replace('"cb"', '"zz"') + "\n")][:0]
        ),
        "c.jsonl",
    ),
    Case(
        "identify-missing-corpus",
        lambda t: ["identify", "--design", write(t, "d.toml", IDENTIFY + '[data]\ncorpus = "gone.jsonl"\n')],
        "gone.jsonl",
    ),
    Case(
        "identify-empty-support",
        lambda t: ["identify", "--design", write(t, "d.toml", SPEC + "[candidates]\ndepth = 1\n")],
        "empty support",
    ),
    Case(
        "identify-no-candidates",
        lambda t: ["identify", "--design", write(t, "d.toml", SPEC + "[sft]\natomic = true\n")],
        "no candidate programs",
    ),
    Case(
        "identify-negative-inputs",
        lambda t: ["identify", "--design", write(t, "d.toml", IDENTIFY + "[data]\ninputs = -4\n")],
        "positive integer",
    ),
    # -- fit
    Case(
        "fit-foreign-symbol",  # a corpus of another library: a symbol the design's spec does not know
        lambda t: [
            "fit",
            "--design",
            write(t, "d.toml", IDENTIFY),
            "--data",
            write(t, "c.jsonl", CORPUS_LINE.replace("S0 >", "S9 >") + "\n"),
            "--out",
            str(t / "fit"),
            "--quiet",
        ],
        "{tmp}/c.jsonl: line 1, column 15: unknown symbol 'S9'",
    ),
    Case(
        "fit-state-outside-x",
        lambda t: [
            "fit",
            "--design",
            write(t, "d.toml", IDENTIFY),
            "--data",
            write(t, "c.jsonl", CORPUS_LINE.replace('"cb"', '"zz"').replace("> cb >", "> zz >") + "\n"),
            "--out",
            str(t / "fit"),
            "--quiet",
        ],
        "{tmp}/c.jsonl: line 1, column 20: state 'zz'",
    ),
    Case(
        "fit-truncated-data",
        lambda t: [
            "fit",
            "--design",
            write(t, "d.toml", IDENTIFY),
            "--data",
            write(t, "c.jsonl", CORPUS_LINE + "\n" + CORPUS_LINE[:50]),
            "--out",
            str(t / "fit"),
            "--quiet",
        ],
        "c.jsonl",
    ),
    Case(
        "fit-missing-data",
        lambda t: [
            "fit",
            "--design",
            write(t, "d.toml", IDENTIFY),
            "--data",
            str(t / "x.jsonl"),
            "--out",
            str(t / "f"),
        ],
        "x.jsonl",
    ),
    # -- sizes checked before they are allocated (kinds: random inputs, decoded prompts, an endless
    # input file, a program's length)
    Case(
        "identify-huge-inputs",
        lambda t: ["identify", "--design", write(t, "d.toml", IDENTIFY + "[data]\ninputs = 1000000000000\n")],
        "[data] inputs = 1,000,000,000,000 would take about",
    ),
    Case("bench-sample-huge-n", lambda t: ["bench", "sample", "--n", "1000000000"], "use a smaller --n"),
    Case("simulate-config-endless", lambda t: ["simulate", "--config", "/dev/zero"], "is larger than 16,777,216 bytes"),
    Case(
        "identify-long-program",
        lambda t: [
            "identify",
            "--design",
            write(
                t, "d.toml", IDENTIFY.replace("chain:shift_up > restart:reverse", " > ".join(["chain:sort"] * 20000))
            ),
        ],
        "20,000 of them, more than the limit of 64",
    ),
    # -- values that used to pass silently (kinds: an empty run, a negative count, a zero that fails
    # late after writing state, an empty design taken as the default)
    Case("simulate-n-zero", lambda t: ["simulate", "--n", "0"], "--n: expected a positive number, got 0"),
    Case(
        "simulate-config-n-zero",
        lambda t: ["simulate", "--config", write(t, "s.toml", "[simulate]\nn = 0\n")],
        "[simulate]: n must be >= 1, got 0",
    ),
    Case(
        "fit-negative-rl-traces",
        lambda t: ["fit", "--design", write(t, "d.toml", IDENTIFY + "[fit]\nrl_traces = -5\n"), "--out", str(t / "f")],
        "rl_traces must be >= 0",
    ),
    Case(
        "fit-nuts-zero-chains",
        lambda t: [
            "fit",
            "--design",
            write(t, "d.toml", IDENTIFY + "[nuts]\nrun = true\nchains = 0\n"),
            "--out",
            str(t / "f"),
            "--quiet",
        ],
        "chains must be >= 1, got 0",
    ),
    Case(
        "export-empty-design",
        lambda t: ["export", "--design", write(t, "d.toml", "# nothing\n"), "--format", "trl", "--out", str(t / "e")],
        "has no [design]",
    ),
    Case(
        "fit-unknown-fit-key",
        lambda t: ["fit", "--design", write(t, "d.toml", IDENTIFY + "[fit]\nsteps_per_moon = 3\n"), "--out", str(t)],
        "steps_per_moon",
    ),
    Case(
        "fit-unwritable-out",
        lambda t: ["fit", "--design", write(t, "d.toml", IDENTIFY), "--out", blocked(t), "--quiet"],
        "{tmp}/file",
    ),
    Case(
        "fit-corrupted-data",
        lambda t: [
            "fit",
            "--design",
            write(t, "d.toml", IDENTIFY),
            "--data",
            write(
                t, "c.jsonl", CORPUS_LINE + "\n" + CORPUS_LINE.replace('"states": ["ba", "cb", "ab"]', '"states": 5')
            ),
            "--out",
            str(t / "fit"),
        ],
        "c.jsonl",
    ),
    Case(
        "fit-corpus-not-objects",
        lambda t: [
            "fit",
            "--design",
            write(t, "d.toml", IDENTIFY),
            "--data",
            write(t, "c.jsonl", "[1, 2]\n"),
            "--out",
            "f",
        ],
        "c.jsonl",
    ),
    # -- quickstart
    Case(
        "quickstart-unwritable-out",
        lambda t: ["quickstart", "--out", blocked(t), "--traces-per-split", "10"],
        "{tmp}/file",
    ),
    Case("quickstart-zero-traces", lambda t: ["quickstart", "--traces-per-split", "0"], "expected a positive number"),
    Case("quickstart-empty-out", lambda t: ["quickstart", "--out", " "], "--out is empty"),
    Case("reproduce-empty-runs", lambda t: ["reproduce", "--runs", ""], "--runs is empty"),
    Case(
        "rl-binary-config",
        lambda t: ["train", "rl", "--config", binary(t), "--init", str(t / "run")],
        "is not UTF-8 text",
    ),
    # -- train sft
    Case("sft-missing-config", lambda t: ["train", "sft", "--config", str(t / "sft.toml")], "{tmp}/sft.toml"),
    Case(
        "sft-unknown-key",
        lambda t: ["train", "sft", "--config", write(t, "s.toml", SFT.replace("n_layer = 1", "n_layers = 1"))],
        "n_layers",
    ),
    Case(
        "sft-wrong-type",
        lambda t: ["train", "sft", "--config", write(t, "s.toml", SFT.replace("steps = 200", "steps = '200'"))],
        "steps",
    ),
    Case(
        "sft-unknown-module",
        lambda t: ["train", "sft", "--config", write(t, "s.toml", SFT.replace('"shift_down"]', '"shift_downward"]'))],
        "shift_downward",
    ),
    Case(
        "sft-impossible-split-sizes",
        lambda t: ["train", "sft", "--config", write(t, "s.toml", SFT.replace("n_sft = 4", "n_sft = 400"))],
        "lower the split size",
    ),
    Case(
        "sft-unknown-section",
        lambda t: ["train", "sft", "--config", write(t, "s.toml", "[trainer]\n")],
        "unknown section(s) ['trainer']",
    ),
    Case(
        "sft-bad-toml", lambda t: ["train", "sft", "--config", write(t, "s.toml", "[training\n")], "is not valid TOML"
    ),
    Case(
        "sft-too-few-slots",
        lambda t: ["train", "sft", "--config", write(t, "s.toml", "[format]\nslots = 2\n[design]\ntrain_depth = 3\n")],
        "does not fit TaskFormat(slots=2)",
    ),
    Case(
        "sft-unwritable-out",
        lambda t: ["train", "sft", "--config", write(t, "s.toml", SFT), "--out", blocked(t)],
        "{tmp}/file",
    ),
    Case(
        "sft-resume-truncated-checkpoint",
        lambda t: (
            ["train", "sft", "--config", write(t, "s.toml", SFT), "--out", str(t), "--resume"]
            + [truncated_pt(t, "checkpoint.pt")][:0]
        ),
        "checkpoint.pt",
    ),
    Case(
        "sft-unknown-split",
        lambda t: ["train", "sft", "--config", write(t, "s.toml", SFT.replace('split = "sft"', 'split = "train"'))],
        "train",
    ),
    # -- train rl
    Case(
        "rl-missing-init",
        lambda t: ["train", "rl", "--config", write(t, "r.toml", RL), "--init", str(t / "sft")],
        "{tmp}/sft",
    ),
    Case(
        "rl-text-init",
        lambda t: ["train", "rl", "--config", write(t, "r.toml", RL), "--init", write(t, "ck.pt", "not a model\n")],
        "{tmp}/ck.pt",
    ),
    Case(
        "rl-truncated-init",
        lambda t: ["train", "rl", "--config", write(t, "r.toml", RL), "--init", truncated_pt(t)],
        "{tmp}/truncated.pt",
    ),
    Case(
        "rl-unknown-key",
        lambda t: ["train", "rl", "--config", write(t, "r.toml", RL + "[rl.extra]\n"), "--init", truncated_pt(t)],
        "r.toml",
    ),
    Case(
        "rl-wrong-type",
        lambda t: [
            "train",
            "rl",
            "--config",
            write(t, "r.toml", RL.replace("group_size = 4", "group_size = [4]")),
            "--init",
            foreign_pt(t),
        ],
        "group_size",
    ),
    # -- evaluate
    Case("evaluate-missing-ckpt", lambda t: ["evaluate", "--ckpt", str(t / "run")], "{tmp}/run"),
    Case("evaluate-text-ckpt", lambda t: ["evaluate", "--ckpt", write(t, "c.pt", "hello\n")], "{tmp}/c.pt"),
    Case("evaluate-truncated-ckpt", lambda t: ["evaluate", "--ckpt", truncated_pt(t)], "{tmp}/truncated.pt"),
    Case("evaluate-foreign-ckpt", lambda t: ["evaluate", "--ckpt", foreign_pt(t)], "{tmp}/foreign.pt"),
    Case("evaluate-zero-examples", lambda t: ["evaluate", "--ckpt", "x", "--examples", "0"], "positive number"),
    # -- examples (and example:NAME wherever a file is expected)
    Case("examples_list-extra-argument", lambda t: ["examples", "list", "c2"], "unrecognized arguments: c2"),
    Case("examples_show-unknown", lambda t: ["examples", "show", "c9"], "no example named 'c9'; the examples are"),
    Case(
        "examples_copy-would-overwrite",
        lambda t: ["examples", "copy", "fit_tiny", "--to", str(Path(write(t, "fit_tiny.toml", "mine\n")).parent)],
        "fit_tiny.toml already exist(s); choose another folder or pass --overwrite",
    ),
    Case("examples_copy-empty-to", lambda t: ["examples", "copy", "--to", " "], "--to is empty"),
    Case("examples_copy-to-a-file", lambda t: ["examples", "copy", "--to", write(t, "f", "")], "{tmp}/f"),
    Case("identify-unknown-example", lambda t: ["identify", "--design", "example:c9"], "no example named 'c9'"),
    Case("sft-unknown-example", lambda t: ["train", "sft", "--config", "example:sft_huge"], "'sft_huge'"),
    # -- probe
    Case("probe-missing-ckpt", lambda t: ["probe", "--ckpt", str(t / "run")], "{tmp}/run"),
    Case("probe-text-ckpt", lambda t: ["probe", "--ckpt", write(t, "c.pt", "hello\n")], "{tmp}/c.pt"),
    Case("probe-truncated-ckpt", lambda t: ["probe", "--ckpt", truncated_pt(t)], "{tmp}/truncated.pt"),
    Case("probe-foreign-ckpt", lambda t: ["probe", "--ckpt", foreign_pt(t)], "{tmp}/foreign.pt"),
    Case("probe-zero-examples", lambda t: ["probe", "--ckpt", "x", "--examples", "0"], "positive number"),
    # -- reproduce
    Case(
        "reproduce-runs-is-a-file",
        lambda t: ["reproduce", "--runs", write(t, "f", ""), "--docs", str(t)],
        "is a file; give a folder",
    ),
    Case(
        "reproduce-unknown-experiment",
        lambda t: ["reproduce", "--only", "no_such_sim", "--runs", str(t)],
        "unknown experiment(s) ['no_such_sim']",
    ),
    Case("reproduce-bad-scale", lambda t: ["reproduce", "--scale", "huge"], "invalid choice: 'huge'"),
    # -- sweep
    Case("sweep-missing-grid", lambda t: ["sweep", "--grid", str(t / "g.toml")], "{tmp}/g.toml"),
    Case(
        "sweep-unknown-kind",
        lambda t: ["sweep", "--grid", write(t, "g.toml", '[sweep]\nkind = "nope"\nbase = "b"\n[grid]\n"a" = [1]\n')],
        "kind must be one of",
    ),
    Case(
        "sweep-too-many-cells",
        lambda t: [
            "sweep",
            "--grid",
            write(
                t,
                "g.toml",
                '[sweep]\nkind = "fit"\nbase = "b"\n[grid]\n"a" = ' + str(list(range(100))) + "\n"
                '"b" = ' + str(list(range(100))) + "\n",
            ),
        ],
        "cells (100 x 100): 10,000 of them, more than the limit of 1,000",
    ),
    Case(
        "sweep-missing-base",
        lambda t: [
            "sweep",
            "--grid",
            write(t, "g.toml", '[sweep]\nkind = "fit"\nbase = "nope.toml"\n[grid]\n"a" = [1]\n'),
        ],
        "nope.toml",
    ),
    Case(
        "sweep-unknown-key",
        lambda t: ["sweep", "--grid", write(t, "g.toml", '[sweep]\nkind = "fit"\nbass = "b"\n[grid]\n"a" = [1]\n')],
        "bass",
    ),
    # -- bench
    Case("bench-unknown-name", lambda t: ["bench", "warp"], "warp"),
    Case("bench-zero-n", lambda t: ["bench", "simulate", "--n", "0"], "positive number"),
    # -- export
    Case(
        "export-missing-design",
        lambda t: ["export", "--design", str(t / "d.toml"), "--format", "verl", "--out", "o"],
        "d.toml",
    ),
    Case(
        "export-unknown-key",
        lambda t: [
            "export",
            "--design",
            write(t, "d.toml", SPEC + DESIGN + "n_rll = 3\n"),
            "--format",
            "trl",
            "--out",
            "o",
        ],
        "n_rll",
    ),
    Case(
        "export-wrong-type",
        lambda t: [
            "export",
            "--design",
            write(t, "d.toml", SPEC + DESIGN.replace("n_rl = 1", "n_rl = 'one'")),
            "--format",
            "verl",
            "--out",
            "o",
        ],
        "n_rl",
    ),
    Case(
        "export-impossible-split-sizes",
        lambda t: ["export", "--design", write(t, "d.toml", SPEC + "[design]\n"), "--format", "verl", "--out", "o"],
        "lower the split sizes",
    ),
    Case(
        "export-no-rl-programs",
        lambda t: [
            "export",
            "--design",
            write(t, "d.toml", SPEC + DESIGN.replace("n_rl = 1", "n_rl = 0")),
            "--format",
            "verl",
            "--out",
            "o",
        ],
        "n_rl > 0",
    ),
    Case(
        "export-unknown-module",
        lambda t: [
            "export",
            "--design",
            write(t, "d.toml", SPEC.replace('"sort"', '"srot"') + DESIGN),
            "--format",
            "verl",
            "--out",
            "o",
        ],
        "srot",
    ),
    Case(
        "export-unwritable-out",
        lambda t: ["export", "--design", write(t, "d.toml", SPEC + DESIGN), "--format", "trl", "--out", blocked(t)],
        "{tmp}/file",
    ),
    Case(
        "export-too-few-slots",
        lambda t: [
            "export",
            "--design",
            write(t, "d.toml", SPEC + DESIGN + "[format]\nslots = 1\n"),
            "--format",
            "trl",
            "--out",
            "o",
        ],
        "raise slots",
    ),
    Case(
        "export-format-unknown-key",
        lambda t: [
            "export",
            "--design",
            write(t, "d.toml", SPEC + DESIGN + "[format]\nslot = 4\n"),
            "--format",
            "trl",
            "--out",
            "o",
        ],
        "slot",
    ),
    Case(
        "simulate-out-is-a-folder",
        lambda t: ["simulate", "--config", write(t, "c.toml", SPEC + DESIGN), "--n", "5", "--out", str(t)],
        "{tmp}",
    ),
    Case(
        "export-bad-format",
        lambda t: ["export", "--design", write(t, "d.toml", SPEC + DESIGN), "--format", "csv", "--out", "o"],
        "invalid choice: 'csv'",
    ),
]


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def _run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:  # argparse's usage errors
        return int(exit_.code or 0)


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.id, marks=[pytest.mark.ray] if "-ray-" in c.id else []) for c in CASES]
)
def test_bad_input_exits_2_with_a_message(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = case.argv(tmp_path)
    before = _files(tmp_path)
    code = _run(argv)
    err = capsys.readouterr().err
    assert code == 2, f"exit code {code}; stderr: {err}"
    assert "Traceback" not in err
    expected = case.expected.format(tmp=tmp_path)
    assert expected in err, f"expected {expected!r} in: {err}"
    assert len([line for line in err.splitlines() if "error:" in line]) == 1, f"one message, not a dump: {err}"
    assert _files(tmp_path) == before, f"left files behind: {sorted(map(str, _files(tmp_path) - before))}"


def test_every_subcommand_has_a_case() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    commands = set()
    for name, p in sub.choices.items():  # type: ignore[union-attr]
        nested = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        commands |= {f"{name} {s}" for s in nested[0].choices} if nested else {name}  # type: ignore[union-attr]
    assert commands == set(SUBCOMMANDS)
    covered = {c.id.split("-")[0] for c in CASES}
    prefix = {"train sft": "sft", "train rl": "rl"}  # the others: "examples show" -> "examples_show"
    assert not [c for c in SUBCOMMANDS if prefix.get(c, c.replace(" ", "_")) not in covered]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["identify", "--design", "{tmp}/missing.toml"], "missing.toml"),
        (["export", "--design", "{tmp}/d.toml", "--format", "verl", "--out", "{tmp}/file/out"], "{tmp}/file"),
    ],
    ids=["identify-missing-design", "export-unwritable-out"],
)
def test_no_traceback_reaches_stderr_of_the_command(tmp_path: Path, argv: list[str], expected: str) -> None:
    write(tmp_path, "d.toml", SPEC + DESIGN)
    (tmp_path / "file").write_text("x\n")
    args = [a.format(tmp=tmp_path) for a in argv]
    proc = subprocess.run(
        [sys.executable, "-m", "hlsm", *args], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert expected.format(tmp=tmp_path) in proc.stderr
    assert not (tmp_path / "out").exists()
