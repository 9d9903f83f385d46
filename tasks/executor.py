"""Where a pipeline's kind runs go (params.yaml's ``global.executor``): one after another in the flow's process
(``sequential``, the default), or at once on a Dask cluster (``dask``), through prefect-dask's task runner.

Only the task pipelines fan out. Data preparation and DVC stay in the flow's process, before the fan-out: DVC locks
its repository, and data/ holds one version at a time. The project lock (tasks/locking.py) stays with the flow's
process too; a worker never takes it (the lock is the parent's, and a worker waiting for it would wait for ever).

A Dask worker trains with ``torch_threads`` threads: its machine's cores shared among the task slots (worker processes
x threads per worker) the scheduler knows on that machine, so workers side by side do not oversubscribe the cores
(two trainings of 2 threads each on 2 cores go 2.8x slower in all than one alone).
"""

import os
import socket
import sys
from contextlib import contextmanager, nullcontext

from tasks.params import ExecutorParams, ParamsError

SEQUENTIAL = "sequential"
CONNECT_SECONDS = 10  # how long a scheduler at global.executor.address has to answer
RELEASE_SECONDS = 10  # for a worker's Prefect to send its last logs and events
THREADS_TAG = "torch_threads"  # on a task run trained on a Dask worker: the torch threads it used


class ExecutorUnavailable(ParamsError):
    """global.executor names a scheduler that does not answer, or a local cluster that cannot start: nothing ran."""


def cores() -> int:
    """The cores this process may run on (its affinity set, which a container or taskset narrows), at least 1."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def local_workers(settings: ExecutorParams) -> int:
    return settings.workers or cores()


class Sequential:
    """Runs each job in this process, in order (the default)."""

    def run(self, flow, task, jobs: dict) -> dict:
        """Each job's final Prefect state, the flow called as a subflow in this process."""
        return {key: flow(**job, return_state=True) for key, job in jobs.items()}


class Dask:
    """Runs the jobs at once on a Dask cluster, each as a Prefect task in a worker process."""

    def __init__(self, runner):
        self.runner = runner
        self.slots_by_host = slots_by_host(runner.client)

    def run(self, flow, task, jobs: dict) -> dict:
        """Each job's final Prefect state, or the error of a worker lost while it ran (killed, out of memory)."""
        futures = {
            key: self.runner.submit(task, parameters={**job, "slots_by_host": self.slots_by_host})
            for key, job in jobs.items()
        }
        outcomes = {}
        for key, future in futures.items():
            try:
                outcomes[key] = future.wrapped_future.result()  # the task's final state (submitted for its state)
            except Exception as error:  # the task never reported: its worker is gone
                outcomes[key] = error
        return outcomes

    def release_workers(self) -> None:
        """Every worker connected now runs ``release_worker``; one that fails to is left as it is."""
        client = self.runner.client
        workers = client.scheduler_info(n_workers=-1)["workers"]
        futures = [client.submit(release_worker, workers=[address], pure=False) for address in workers]
        client.gather(futures, errors="skip")


@contextmanager
def open_executor(settings: ExecutorParams, logger):
    """The executor of global.executor, started (a local cluster) or connected to (a scheduler's address) before any
    work, so that a scheduler that does not answer stops the run before anything ran; stopped on exit."""
    if settings.kind == SEQUENTIAL:
        yield Sequential()
        return
    from prefect_dask import DaskTaskRunner

    if settings.address:
        runner = DaskTaskRunner(address=settings.address, client_kwargs={"timeout": CONNECT_SECONDS})
        where = scheduler(settings)
    else:
        workers = local_workers(settings)
        runner = DaskTaskRunner(
            cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True, "dashboard_address": ":0"}
        )
        where = f"a local Dask cluster of {workers} workers (global.executor.workers)"
    with closed_quietly(runner, logger):
        try:
            executor = Dask(runner)
        except (OSError, TimeoutError) as error:
            raise ExecutorUnavailable(f"cannot reach {where}: {error}") from None
        logger.info("task pipelines run on %s (tasks per machine: %s)", where, describe(executor.slots_by_host))
        try:
            yield executor
        finally:
            if not stopping():
                executor.release_workers()


def stopping() -> bool:
    """In a finally block: the run is being stopped (Ctrl-C's KeyboardInterrupt, SIGTERM's, Prefect's
    TerminationSignal: exceptions that are not an Exception), not ending or failing. The workers may still be busy
    with a job then, and ``release_workers`` would wait for it to end: a SIGTERM to the command stopped nothing until
    the worker's training ended (over 5 minutes). They are stopped with the cluster instead (their nanny kills them
    4 s later)."""
    error = sys.exc_info()[1]
    return error is not None and not isinstance(error, Exception)


def scheduler(settings: ExecutorParams) -> str:
    return f"the Dask scheduler at global.executor.address {settings.address}"


def check_reachable(settings: ExecutorParams) -> None:
    """The scheduler's port answers (when global.executor names one): what the command line checks before it starts
    anything, in a second rather than after a Prefect server's start. ``open_executor`` checks again, fully."""
    if settings.kind == SEQUENTIAL or not settings.address:
        return
    host, _, port = settings.address.removeprefix("tcp://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS).close()
    except OSError as error:
        raise ExecutorUnavailable(f"cannot reach {scheduler(settings)}: {error.strerror or error}") from None


@contextmanager
def closed_quietly(runner, logger):
    """The task runner, started; on exit it closes its cluster (or its connection to one), and a cluster slow to
    close is a warning: the runs have ended by then, their results recorded."""
    runner.__enter__()
    try:
        yield runner
    finally:
        try:
            runner.__exit__(None, None, None)
        except Exception as error:
            logger.warning("the Dask cluster did not close cleanly: %r", error)


def release_worker() -> None:
    """In a worker, at the end of a run: send what its Prefect still holds (logs, events) to the server. A worker
    stopped with a local cluster does not exit by itself (something it loaded holds it at interpreter exit; closing
    MLflow's database connections is not enough) and its nanny kills it 4 s later, saying so in a warning: by then
    its runs, logs and events are all recorded."""
    from prefect._internal.concurrency.services import QueueService

    QueueService.drain_all(timeout=RELEASE_SECONDS)


def slots_by_host(client) -> dict[str, int]:
    """How many tasks the scheduler's workers run at once on each machine (its workers' threads, summed)."""
    slots = {}
    for worker in client.scheduler_info(n_workers=-1)["workers"].values():
        slots[worker["host"]] = slots.get(worker["host"], 0) + worker["nthreads"]
    return slots


def describe(slots: dict[str, int]) -> str:
    return ", ".join(f"{host}: {count} at once" for host, count in slots.items())


def use_worker_threads(slots_by_host: dict[str, int]) -> int:
    """In a Dask worker: set torch's threads to this machine's cores over the task slots the scheduler knew on it when
    the run started (``slots_by_host``); returns them. A worker that joined later, on a machine the run did not see,
    counts its own threads only (as if alone on its machine)."""
    import torch
    from distributed import get_worker
    from distributed.comm.addressing import get_address_host

    worker = get_worker()
    slots = slots_by_host.get(get_address_host(worker.address)) or worker.state.nthreads
    threads = max(1, cores() // slots)
    torch.set_num_threads(threads)
    return threads


def exclusive(name: str):
    """Held by one Dask task at a time across the cluster (a lock on its scheduler), when called in a Dask worker; in
    the flow's own process, where the project lock already keeps pipelines apart, it holds nothing. For what
    parallel runs of one task must not do at once: compare with the champion and move its alias."""
    if "distributed" not in sys.modules:  # never loaded: not a worker (and a sequential run need not load it)
        return nullcontext()
    from distributed import Lock, get_worker

    try:
        get_worker()
    except ValueError:  # not in a worker
        return nullcontext()
    return Lock(name)
