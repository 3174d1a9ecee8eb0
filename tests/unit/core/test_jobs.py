"""The jobs engine: in-process, a LocalCluster of 2 worker processes (``--workers 2``), and a dask
cluster the test starts as a user does on machines (``dask scheduler`` + two ``dask worker``
processes, reached by address: ``--cluster``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgetl.core.errors import ConfigError, DataError
from edgetl.core.jobs import Engine, run_jobs


def pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def square_or_fail(x: int) -> int:
    if x < 0:
        raise DataError(f"negative item {x}")
    return x * x


def test_in_process_keeps_order_and_reports_progress():
    seen = []
    assert run_jobs(square_or_fail, [3, 1, 2], progress=lambda *a: seen.append(a), task="squares") == [9, 1, 4]
    assert [a[1] for a in seen] == [1, 2, 3] and seen[-1][0] == "squares"
    assert Engine().describe() == {"engine": "in-process", "workers": 1}


def test_bad_engines_are_refused():
    with pytest.raises(ConfigError, match="--workers"):
        Engine(workers=0)
    with pytest.raises(ConfigError, match="tcp://"):
        Engine(address="localhost:8786")


def test_two_local_workers_share_the_jobs():
    pids = run_jobs(pid_after, [1.0] * 4, Engine(workers=2))
    assert len(set(pids)) == 2 and os.getpid() not in pids
    with pytest.raises(DataError, match="negative item -2"):  # a job's EdgetlError comes back as it was
        run_jobs(square_or_fail, [1, -2], Engine(workers=2))


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1, as on two machines."""
    folder = tmp_path_factory.mktemp("dask")
    scheduler_file = folder / "scheduler.json"
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[3]), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(scheduler_file)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        for _ in range(2):
            procs.append(subprocess.Popen([str(bin_dir / "dask"), "worker", address, "--nworkers", "1", "--nthreads", "1",
                                           "--no-dashboard", "--memory-limit", "0"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        import distributed

        with distributed.Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


def test_a_cluster_reached_by_address_runs_the_jobs_on_its_workers(dask_cluster):
    engine = Engine(address=dask_cluster)
    pids = run_jobs(pid_after, [1.0] * 4, engine)
    assert len(set(pids)) == 2 and os.getpid() not in pids
    assert engine.describe() == {"engine": "dask.distributed", "cluster": dask_cluster}


def test_an_unreachable_cluster_is_one_line():
    with pytest.raises(ConfigError, match="cannot reach the dask scheduler at tcp://127.0.0.1:9"):
        run_jobs(square_or_fail, [1], Engine(address="tcp://127.0.0.1:9", connect_timeout_s=2))
