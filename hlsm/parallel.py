"""One way to run independent jobs in parallel: a spawn process pool, or Ray tasks on a cluster.

:class:`Runner` runs a list of jobs (``fn(*args)`` each, ``fn`` a module-level function) and returns
their results in order: in this process (``workers = 1``), on a pool of ``workers`` spawned
processes, or as Ray tasks (``backend = "ray"``, ``pip install 'hlsm[ray]'``) on the cluster at
``address`` ("" starts a local Ray instance; "auto" or "ray://head:10001" a running one), each
task asking for ``num_gpus`` GPUs. Every worker process loads the plugin files and entry points of
the command that started it first (:mod:`hlsm.plugins`), once per process, so custom modules work
wherever a job runs. A runner keeps its pool (or its Ray connection) across calls until it is
closed, so the stages of one experiment share one pool.

Processes are spawned, not forked: forking after torch has started its thread pools can hang.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import typing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from hlsm.errors import HLSMError
from hlsm.plugins import load_plugins, plugin_files

BackendKind = Literal["local", "ray"]
BACKENDS: tuple[str, ...] = typing.get_args(BackendKind)


class ParallelError(HLSMError):
    """A backend that cannot start: Ray missing or unreachable, an unknown backend name."""


@dataclass(frozen=True)
class Backend:
    """Where jobs run: ``kind`` (local | ray), ``workers`` (local processes; 1: this process),
    ``address`` (ray), ``num_gpus`` (ray: GPUs each task asks for)."""

    kind: BackendKind = "local"
    workers: int = 1
    address: str = ""
    num_gpus: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in BACKENDS:
            raise ParallelError(f"unknown backend {self.kind!r}; choose one of {list(BACKENDS)}")
        if self.workers < 1:
            raise ParallelError(f"workers must be at least 1, got {self.workers}")


def _call_with_plugins(plugins: tuple[str, ...], fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a Ray worker, after loading the driver's plugin files (once per process)."""
    load_plugins(plugins)
    return fn(*args)


class Runner:
    """Runs jobs on a :class:`Backend`; use as a context manager (the pool lives until exit)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._pool: ProcessPoolExecutor | None = None
        self._ray: Any = None
        self._started_ray = False

    def __enter__(self) -> Runner:
        b = self.backend
        if b.kind == "local" and b.workers > 1:
            self._pool = spawn_pool(b.workers)
        elif b.kind == "ray":
            self._started_ray = not _ray_running()  # a session the caller opened stays open
            self._ray = _connect(b.address)
        return self

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self._started_ray and self._ray is not None:
            self._ray.shutdown()
            self._ray, self._started_ray = None, False

    @property
    def parallel(self) -> int:
        """How many jobs run at once on this machine (Ray: unknown, 0)."""
        if self.backend.kind == "ray":
            return 0
        return self.backend.workers

    def map(self, fn: Callable[..., Any], jobs: Sequence[tuple[Any, ...]]) -> list[Any]:
        """``[fn(*args) for args in jobs]``, run on the backend; results in the order of ``jobs``."""
        if self._ray is not None:
            task = self._ray.remote(num_gpus=self.backend.num_gpus)(_call_with_plugins)
            return list(self._ray.get([task.remote(plugin_files(), fn, *args) for args in jobs]))
        if self._pool is None:
            return [fn(*args) for args in jobs]
        futures = [self._pool.submit(fn, *args) for args in jobs]
        return [f.result() for f in futures]


def spawn_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` spawned processes, each of which has loaded this process's plugins: the
    one pool of the package (:class:`Runner`, :func:`in_fresh_process`)."""
    spawn = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(workers, mp_context=spawn, initializer=load_plugins, initargs=(plugin_files(),))


def in_fresh_process(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a newly spawned process that has loaded this one's plugins (for what must not
    share this process's state: a peak-memory measurement, say)."""
    with spawn_pool(1) as pool:
        return pool.submit(fn, *args).result()


def _ray_running() -> bool:
    try:
        import ray
    except ImportError:
        return False
    return bool(ray.is_initialized())


def _connect(address: str) -> Any:
    """The ``ray`` module, initialised at ``address`` ("" starts a local instance)."""
    try:
        import ray
    except ImportError:
        raise ParallelError("backend 'ray' needs Ray: pip install 'hlsm[ray]'") from None
    if not ray.is_initialized():
        try:
            ray.init(address=address or None, include_dashboard=False, log_to_driver=False)
        except Exception as err:  # noqa: BLE001 (Ray raises many kinds for a bad address or a missing client)
            with contextlib.suppress(Exception):  # a failed client connection leaves client mode on: clear it
                ray.shutdown()
            hint = " (a ray:// address needs pip install 'ray[client]')" if address.startswith("ray://") else ""
            where = address or "a local instance"
            raise ParallelError(f"cannot start or reach Ray at {where!r}: {err}{hint}") from None
    return ray
