"""Shared test fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hlsm.examples import CONFIGS
from hlsm.runtime import torch_threads

# Ray started by a test (a local instance, or a cluster on 127.0.0.1) stays on the loopback address:
# on Linux Ray announces the machine's interface address unless told it is a one-machine cluster.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


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
