"""Independent jobs (``edgetl select``'s candidates, ``build --target auto``'s ladder rungs) run here,
on local worker processes, or on machines, through dask.distributed.

Why dask.distributed and not Ray or KerasTuner's distributed mode: its wheels are pure Python
(they install wherever edgetl's training side does, with no gRPC/protobuf pins to clash with
TensorFlow's), a ``LocalCluster`` of worker processes is one call (what ``--workers N`` starts
and what the tests start), and the same code reaches machines through ``dask scheduler`` /
``dask worker tcp://HOST:8786`` (``--cluster tcp://HOST:8786``). KerasTuner distributes only its
own trials of a ``HyperModel``; a ladder rung or a bench run is not one.

Jobs never time latency: a measurement taken while other jobs share the cores would be wrong.
Callers run the jobs that make artifacts here, then time them one after another.

The job functions must be importable module-level functions (they are pickled to the workers,
which import edgetl themselves); their arguments and results are plain data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from edgetl.core.errors import ConfigError, EdgetlError, MissingDependencyError
from edgetl.core.progress import Progress

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

#: Seconds to wait for a ``--cluster`` scheduler to answer.
CONNECT_TIMEOUT_S = 20


class JobCrashedError(EdgetlError):
    """A job killed its worker process (a native crash or the out-of-memory killer)."""


@dataclass(frozen=True)
class Engine:
    """Where jobs run.

    Attributes:
        workers: 1 (and no ``address``): here, one job after another, no dask. N > 1: a dask
            ``LocalCluster`` of N worker processes with one thread each, started for the call.
        address: ``tcp://HOST:PORT`` of a running dask scheduler (``--cluster``); its workers
            run the jobs and ``workers`` is ignored.
    """

    workers: int = 1
    address: str | None = None
    connect_timeout_s: float = CONNECT_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"--workers must be at least 1 (received {self.workers})")
        if self.address is not None and "://" not in self.address:
            raise ConfigError(f"--cluster must be a dask scheduler address such as tcp://host:8786 (received {self.address!r})")

    @property
    def distributed(self) -> bool:
        return self.address is not None or self.workers > 1

    def describe(self) -> dict[str, Any]:
        """What ``select.json`` / ``ladder.json`` record about where the jobs ran."""
        if self.address is not None:
            return {"engine": "dask.distributed", "cluster": self.address}
        if self.workers > 1:
            return {"engine": "dask.distributed", "cluster": "local", "workers": self.workers}
        return {"engine": "in-process", "workers": 1}


def _dask():
    try:
        import distributed
    except ImportError:
        raise MissingDependencyError(
            'running jobs on several workers needs dask.distributed: pip install "edgetl[train]" (or pass --workers 1)'
        ) from None
    return distributed


def run_jobs(
    fn: Callable[[T], R], items: Sequence[T], engine: Engine | None = None, *, progress: Progress | None = None, task: str = "jobs",
    labels: Sequence[str] | None = None,
) -> list[R]:
    """``[fn(item) for item in items]``, in item order, wherever ``engine`` says.

    Args:
        fn: a module-level function (pickled to the worker processes).
        items: its arguments, plain data.
        engine: where; None: here.
        progress: called ``(task, done, total, label)`` as jobs finish.
        labels: one name per item for progress and errors (default: the item's ``str``).

    Raises:
        EdgetlError: the first job that raised one, with its own type and message.
        JobCrashedError: a job killed its worker process.
        ConfigError: the ``--cluster`` scheduler cannot be reached.
    """
    engine = engine or Engine()
    items = list(items)
    names = list(labels) if labels is not None else [str(item) for item in items]

    def report(done: int, name: str) -> None:
        if progress is not None:
            progress(task, done, len(items), name)

    if not engine.distributed or not items:
        results = []
        for i, item in enumerate(items):
            results.append(fn(item))
            report(i + 1, names[i])
        return results

    distributed = _dask()
    import dask

    # a crashed worker is a crashed job: say so at once instead of retrying it on another worker
    # dask's INFO lines ("To route to workers diagnostics ...") would land in the CLI's output
    logging.getLogger("distributed").setLevel(max(logging.WARNING, logging.getLogger("distributed").level))
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with _client(distributed, engine) as client:
            log.info("running %d %s on %s", len(items), task, engine.describe())
            futures = client.map(fn, items, pure=False, key=[f"{task}-{i}" for i in range(len(items))])
            index = {future.key: i for i, future in enumerate(futures)}
            done = 0
            try:
                for future in distributed.as_completed(futures):
                    i = index[future.key]
                    if future.status == "error":
                        exc = future.exception()
                        if isinstance(exc, distributed.KilledWorker):
                            raise JobCrashedError(f"{task}: the job for {names[i]} killed its worker process (a native crash or out of memory)")
                        raise exc
                    done += 1
                    report(done, names[i])
                return [future.result() for future in futures]
            finally:
                client.cancel(futures)


class _client:
    """A dask Client on the engine's cluster (a LocalCluster it starts and stops, or ``address``)."""

    def __init__(self, distributed, engine: Engine) -> None:
        self.distributed, self.engine, self.cluster, self.client = distributed, engine, None, None

    def __enter__(self):
        d = self.distributed
        if self.engine.address is not None:
            try:
                self.client = d.Client(self.engine.address, timeout=self.engine.connect_timeout_s)
            except (OSError, TimeoutError) as exc:
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise ConfigError(
                    f"cannot reach the dask scheduler at {self.engine.address} ({first}); start `dask scheduler` there "
                    "and `dask worker ADDRESS` on each machine, or drop --cluster"
                ) from None
        else:
            # memory_limit=0: a job that needs the memory fails by itself instead of being restarted mid-training
            self.cluster = d.LocalCluster(
                n_workers=self.engine.workers, threads_per_worker=1, processes=True, dashboard_address=None,
                memory_limit=0, silence_logs=logging.ERROR,
            )
            self.client = d.Client(self.cluster)
        return self.client

    def __exit__(self, *exc_info) -> None:
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
