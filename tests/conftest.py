"""Shared test fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hlsm.examples import CONFIGS
from hlsm.runtime import torch_threads

# Ray started by a test (a local instance, or a cluster on 127.0.0.1) stays on the loopback address:
# on Linux Ray announces the machine's interface address unless told it is a one-machine cluster.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# A Ray client address that answers nothing (the bad-input test of a ray:// address) is given up
# after seconds, not Ray's default half minute.
os.environ.setdefault("RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S", "1")
os.environ.setdefault("RAY_CLIENT_MAX_CONNECTION_TIMEOUT_S", "2")


if os.environ.get("PYTEST_XDIST_WORKER"):  # pytest -n N: N processes share the cores, one torch thread each
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _one_thread_for_lm_tests(request: pytest.FixtureRequest) -> Iterator[None]:
    """Transformer tests (``tests/lm/``) run torch on one thread: tiny models gain nothing from
    intra-op threads and lose much when other processes share the two cores."""
    if request.path.parent.name == "lm":
        with torch_threads(1):
            yield
    else:
        yield


@pytest.fixture(scope="session")
def sft_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SFT run (150 steps, about a second): the --init of RL tests and the checkpoint the probe reads."""
    from hlsm.config import load_toml
    from hlsm.lm.sft import train_sft
    from hlsm.lm.sft_config import SFTConfig

    raw = load_toml(CONFIGS / "sft_tiny.toml")
    raw["training"] |= {"steps": 150, "eval_every": 0, "checkpoint_every": 150, "threads": 1}
    out = tmp_path_factory.mktemp("sft") / "run"
    with torch_threads(1):
        train_sft(SFTConfig.from_dict(raw), out, progress=False)
    return out


def pytest_itemcollected(item: pytest.Item) -> None:
    """Under ``pytest -n N --dist loadgroup`` (``make test``) the tests that start or reach Ray share
    one worker, one at a time (two Ray instances started at once on one machine interfere), and so do
    the tests of a module or session fixture (built once per worker). Marked as each item is
    collected, before pytest-xdist reads the groups."""
    if item.get_closest_marker("ray") is not None:
        item.add_marker(pytest.mark.xdist_group("ray"))
    elif "tiny_reproduction" in getattr(item, "fixturenames", ()):
        item.add_marker(pytest.mark.xdist_group("tiny_reproduction"))
    elif _uses_a_module_fixture(item):
        item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0].replace("/", "_")))


def _uses_a_module_fixture(item: pytest.Item) -> bool:
    info = getattr(item, "_fixtureinfo", None)
    return info is not None and any(defs and defs[-1].scope == "module" for defs in info.name2fixturedefs.values())


TINY_REPRODUCTION = ("trace_distributions", "vi_vs_checker")
"""The experiments :func:`tiny_reproduction` runs: once per test session, for every test that reads them."""


@pytest.fixture(scope="session")
def tiny_reproduction(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any]:
    """``hlsm reproduce --scale tiny`` of :data:`TINY_REPRODUCTION` into a fresh folder, once: the runs
    folder, the docs folder and the outcomes (tests using it are one xdist group, so once per run)."""
    from hlsm.app.reproduce import reproduce

    root = tmp_path_factory.mktemp("reproduce")
    runs, docs = root / "runs", root / "docs"
    _, outcomes = reproduce("tiny", runs=runs, docs=docs, only=list(TINY_REPRODUCTION), echo=False)
    return runs, docs, outcomes
