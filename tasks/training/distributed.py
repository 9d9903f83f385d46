"""Training one model in several processes (params ``train.distributed.nproc``): data parallel over
torch.distributed, gloo on the CPU and NCCL on GPUs, on a free loopback port.

Every process (a rank) builds the same model from the same seed, trains on its shard of each epoch (batch_size /
nproc examples of every global batch) and, after each backward pass, averages its gradients with the other ranks' in
one all-reduce, as DistributedDataParallel does: every rank then takes the same optimizer step and holds the same
weights. DistributedDataParallel's wrapper itself is not used: the kinds' losses call their models' own methods
and attributes (``model.pad_id``, the speech recognizer's ``forward_with_ctc``), which the wrapper hides, and a
forward pass that bypasses it would leave its gradients unsynchronised. Sums (losses, correct labels, counts) are
reduced the same way, so every rank sees the metrics of the whole epoch and of the whole validation split.

Rank 0 alone writes files and reports: its events go through a queue to the process that launched the ranks, which
logs them (MLflow, Prefect) as a single-process training does. A rank that fails fails the launch with its error
and the others are stopped; a collective that waits longer than COLLECTIVE_TIMEOUT raises instead of hanging.
"""

import os
import socket
import traceback
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

COLLECTIVE_TIMEOUT = timedelta(minutes=10)  # a rank waits at most this long for the others at any all-reduce
FAILED = "rank failed"  # the event a rank sends the launcher with its error
POLL_SECONDS = 0.5  # how often the launcher looks for rank 0's events and for a rank that ended


@dataclass(frozen=True)
class Ranks:
    """Which process of how many this is; ONE_PROCESS (Ranks()) trains alone, where every method does nothing."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """The rank that writes files and reports."""
        return self.rank == 0

    def place(self, device: torch.device) -> torch.device:
        """One GPU per rank; the CPU is shared."""
        return torch.device("cuda", self.rank) if device.type == "cuda" and self.world > 1 else device

    def seed(self, seed: int) -> None:
        """After the model is built (the same on every rank): each rank draws its own dropout masks."""
        if self.world > 1:
            torch.manual_seed(seed * 1000 + self.rank)

    def sum(self, *values: float, device: torch.device) -> tuple:
        """The values summed over all ranks (in float64: counts stay exact), or as they are in one process."""
        if self.world == 1:
            return values
        total = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(total)
        return tuple(total.tolist())

    def share_weights(self, model) -> None:
        """Rank 0's weights on every rank: they start equal even if a model's initialisation is not seeded."""
        if self.world > 1:
            for tensor in model.state_dict().values():
                dist.broadcast(tensor, 0)

    def average_gradients(self, model) -> None:
        """Each gradient averaged over the ranks, in one all-reduce. A parameter no rank's batch reached keeps no
        gradient (None), as in one process, so that the optimizer leaves it alone."""
        if self.world == 1:
            return
        params = [p for p in model.parameters() if p.requires_grad]
        has_grad = [float(p.grad is not None) for p in params]
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])
        flat = torch.cat([flat, torch.tensor(has_grad, dtype=flat.dtype, device=flat.device)])
        dist.all_reduce(flat)
        reached = flat[-len(params) :].tolist()
        offset = 0
        for param, count in zip(params, reached):
            size = param.numel()
            param.grad = flat[offset : offset + size].view_as(param).div_(self.world) if count else None
            offset += size


ONE_PROCESS = Ranks()


class Events:
    """What a rank's training reports (name, arguments): rank 0's go to the launcher through the queue, the other
    ranks' nowhere; in one process, straight to a handler."""

    def __init__(self, queue=None, handler=None):
        self.queue, self.handler = queue, handler

    def __call__(self, name: str, *args) -> None:
        if self.handler is not None:
            self.handler(name, *args)
        elif self.queue is not None:
            self.queue.put((name, args))


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def threads_per_rank(nproc: int) -> int:
    """The cores this process may use, shared out between the ranks."""
    return max(1, len(os.sched_getaffinity(0)) // nproc)


def check_devices(nproc: int, device: torch.device, key: str) -> None:
    """NCCL needs a GPU per rank."""
    if device.type == "cuda" and nproc > torch.cuda.device_count():
        raise ValueError(f"{key} ({nproc}) is more than the GPUs here ({torch.cuda.device_count()})")


def launch(nproc: int, device: torch.device, target, args: tuple, on_event) -> None:
    """Run target(*args, events, ranks) in nproc new processes; on_event(name, *args) gets rank 0's events here, in
    this process and thread, as they come. Raises the error of a rank that failed (the others are stopped)."""
    backend = "nccl" if device.type == "cuda" else "gloo"
    queue = mp.get_context("spawn").SimpleQueue()
    context = mp.start_processes(
        run_rank,
        args=(nproc, free_port(), backend, threads_per_rank(nproc), target, args, queue),
        nprocs=nproc,
        join=False,
        start_method="spawn",
    )
    failures = []  # (rank, pid, traceback) in the order the ranks failed

    def receive(name, *args):
        if name == FAILED:
            failures.append(args)
        else:
            on_event(name, *args)

    try:
        while not context.join(timeout=POLL_SECONDS):
            forward(queue, receive)
        forward(queue, receive)
    except mp.ProcessRaisedException as error:
        stop(context)
        forward(queue, receive)
        raise first_failure(failures) or error from None
    except BaseException:
        stop(context)
        raise


def first_failure(failures: list) -> mp.ProcessRaisedException | None:
    """The error of the rank that failed first. When one rank fails, the others fail next in their collectives
    ("Connection reset by peer"), and torch reports whichever process it sees first: that may be the consequence."""
    if not failures:
        return None
    rank, pid, trace = failures[0]
    return mp.ProcessRaisedException(f"\n\n-- Process {rank} terminated with the following error:\n{trace}", rank, pid)


def forward(queue, on_event) -> None:
    while not queue.empty():
        name, args = queue.get()
        on_event(name, *args)


def stop(context) -> None:
    """End the ranks still running (join already stops them when one failed; not when the launcher itself is
    interrupted)."""
    for process in context.processes:
        if process.is_alive():
            process.terminate()
    for process in context.processes:
        process.join()


def run_rank(rank: int, world: int, port: int, backend: str, threads: int, target, args: tuple, queue) -> None:
    """One rank: join the group, train, leave."""
    torch.set_num_threads(threads)
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=COLLECTIVE_TIMEOUT)  # fmt: skip
    try:
        target(*args, Events(queue if rank == 0 else None), Ranks(rank, world))
    except BaseException:
        queue.put((FAILED, (rank, os.getpid(), traceback.format_exc())))  # before the others fail because of it
        raise
    finally:
        dist.destroy_process_group()
