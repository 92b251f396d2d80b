"""``hlsm reproduce --backend ray``: the training stages as Ray tasks on a cluster started here, on
the loopback address, give the local backend's results."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from hlsm.app.reproduce import reproduce

LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}
"""Ray on Linux announces the machine's interface address unless told it is a one-machine cluster;
these keep every connection on 127.0.0.1 (and skip the token files a test does not need). Set for
every test in conftest.py too; here they must also reach the experiments' subprocesses."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.ray
def test_reproduce_on_a_local_ray_cluster_equals_the_local_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("ray")
    ray = shutil.which("ray", path=str(Path(sys.executable).parent))
    assert ray is not None, "the ray command of this environment"
    for key, value in LOOPBACK.items():
        monkeypatch.setenv(key, value)
    port = _free_port()
    start = [ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2"]
    temp = tempfile.mkdtemp(prefix="hlsm-ray-")  # short: Ray's socket paths must fit in 107 characters
    start += ["--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"]
    started = subprocess.run(start, capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stdout[-2000:] + started.stderr[-2000:]
    try:
        only = ["finding1_rl_data"]
        _, on_ray = reproduce("tiny", runs=tmp_path / "ray", docs=tmp_path / "docs_ray", only=only, echo=False,
                              backend="ray", address=f"127.0.0.1:{port}")  # fmt: skip
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, timeout=120)
        shutil.rmtree(temp, ignore_errors=True)
    _, local = reproduce("tiny", runs=tmp_path / "local", docs=tmp_path / "docs_local", only=only, echo=False)
    assert [o.status for o in on_ray] == [o.status for o in local] == ["ran"]
    log = (tmp_path / "ray" / "finding1_rl_data" / "log.txt").read_text()
    assert "Connected to Ray cluster" in log  # the stages went to the cluster, not to a local pool
    a, b = (json.loads((tmp_path / r / "finding1_rl_data" / "results.json").read_text()) for r in ("ray", "local"))
    for key in ("per_seed", "summary", "contrasts", "calibration", "curves"):
        assert a[key] == b[key], key
