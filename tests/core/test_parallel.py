"""hlsm.parallel: one runner for local pools and Ray; results in order; a caller's Ray session survives."""

from __future__ import annotations

import os

import pytest

from hlsm.parallel import Backend, ParallelError, Runner, in_fresh_process


def _square_and_pid(x: int) -> tuple[int, int]:
    return x * x, os.getpid()


def test_local_runner_in_process_and_on_a_spawn_pool_keep_the_order() -> None:
    jobs = [(i,) for i in range(6)]
    with Runner(Backend("local", 1)) as runner:
        here = runner.map(_square_and_pid, jobs)
    assert [r[0] for r in here] == [i * i for i in range(6)] and {r[1] for r in here} == {os.getpid()}
    with Runner(Backend("local", 2)) as runner:
        pooled = runner.map(_square_and_pid, jobs)
        again = runner.map(_square_and_pid, jobs)  # the pool lives across calls
    assert [r[0] for r in pooled] == [i * i for i in range(6)] and os.getpid() not in {r[1] for r in pooled}
    assert {r[1] for r in again} <= {r[1] for r in pooled}


def test_a_fresh_process_runs_the_job_elsewhere() -> None:
    assert in_fresh_process(_square_and_pid, 7)[0] == 49
    assert in_fresh_process(_square_and_pid, 7)[1] != os.getpid()


def test_bad_backends_are_refused() -> None:
    with pytest.raises(ParallelError, match="unknown backend 'slurm'"):
        Backend("slurm")
    with pytest.raises(ParallelError, match="workers must be at least 1"):
        Backend("local", 0)


@pytest.mark.ray
def test_ray_runner_leaves_a_session_it_did_not_start_open() -> None:
    ray = pytest.importorskip("ray")
    ray.init(include_dashboard=False, log_to_driver=False, num_cpus=1)
    try:
        with Runner(Backend("ray")) as runner:
            assert [r[0] for r in runner.map(_square_and_pid, [(2,), (3,)])] == [4, 9]
        assert ray.is_initialized()  # the caller's session
    finally:
        ray.shutdown()
    with Runner(Backend("ray")) as runner:  # a session the runner starts, it closes
        assert runner.map(_square_and_pid, [(4,)])[0][0] == 16
    assert not ray.is_initialized()
