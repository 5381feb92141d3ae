"""Several processes on one job: the default torch.distributed process group.

A launcher starts one process per device and tells each, through environment
variables, who it is: torchrun sets RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR
and MASTER_PORT; Slurm's srun sets SLURM_PROCID, SLURM_LOCALID, SLURM_STEP_NUM_TASKS
and SLURM_NODELIST, which are mapped to torch's names the way mmengine's
Slurm launcher maps them. Backend: NCCL for CUDA, gloo for the CPU.

mmengine's own ``init_dist`` selects the CUDA device unconditionally, which
fails on a CPU-only machine; hence this small initializer, which the Runner
then finds already set up.
"""

from __future__ import annotations

import datetime
import os
import subprocess

import torch
import torch.distributed as dist

LAUNCHERS = ("none", "pytorch", "slurm")
BACKENDS = {"cuda": "nccl", "cpu": "gloo"}


class DistributedSetupError(ValueError):
    """The launcher's environment is incomplete or does not fit the device."""


def dist_info() -> tuple[int, int]:
    """(rank, world_size) of this process; (0, 1) when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main_process() -> bool:
    return dist_info()[0] == 0


def launcher_from_env(env: dict[str, str] | None = None) -> str:
    """'pytorch' under torchrun with WORLD_SIZE > 1, 'slurm' in a task of an
    srun step of several tasks, else 'none'.

    The step's task count, not the job's SLURM_NTASKS: a batch script of a
    multi-task job is one process and must not wait for peers.
    """
    env = os.environ if env is None else env
    if int(env.get("WORLD_SIZE", "1")) > 1:
        return "pytorch"
    if int(env.get("SLURM_STEP_NUM_TASKS", "1")) > 1 and "SLURM_PROCID" in env:
        return "slurm"
    return "none"


def init_from_env(*, device: str, timeout_s: float = 1800.0, launcher: str | None = None) -> bool:
    """Joins the default process group when the environment names one.

    launcher: 'pytorch', 'slurm', or None to read it from the environment
    (launcher_from_env); 'none' does nothing. device: 'cpu' (gloo) or 'cuda' / 'cuda:i' (NCCL; this process then uses
    GPU LOCAL_RANK). timeout_s: how long a collective (a barrier) waits for
    the slowest process. Returns True when running distributed.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    launcher = launcher_from_env() if launcher is None else launcher
    if launcher not in LAUNCHERS:
        raise DistributedSetupError(f"launcher {launcher!r} unknown; use one of {LAUNCHERS}")
    if launcher == "none":
        return False
    kind = torch.device(device).type
    if kind not in BACKENDS:
        raise DistributedSetupError(f"device {device!r}: distributed runs support "
                                    f"{sorted(BACKENDS)}; set device: cpu or cuda")
    if launcher == "slurm":
        _export_slurm_env()
    missing = [k for k in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
               if k not in os.environ]
    if missing:
        raise DistributedSetupError(f"environment lacks {missing}; start the processes with "
                                    "torchrun (or srun) rather than setting WORLD_SIZE by hand")
    if kind == "cuda":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend=BACKENDS[kind],
                            timeout=datetime.timedelta(seconds=timeout_s))
    return True


def _export_slurm_env() -> None:
    """Slurm's task variables under the names torch's env:// rendezvous reads."""
    env = os.environ
    env.setdefault("MASTER_PORT", "29500")
    if "MASTER_ADDR" not in env:
        nodes = env.get("SLURM_NODELIST") or env.get("SLURM_JOB_NODELIST")
        if not nodes:
            raise DistributedSetupError("under srun: neither MASTER_ADDR nor SLURM_NODELIST "
                                        "is set; export MASTER_ADDR=<first node>")
        first = subprocess.run(["scontrol", "show", "hostnames", nodes], check=True,
                               capture_output=True, text=True).stdout.split()[0]
        env["MASTER_ADDR"] = first
    env["WORLD_SIZE"] = env.get("SLURM_STEP_NUM_TASKS") or env["SLURM_NTASKS"]
    env["RANK"] = env["SLURM_PROCID"]
    env["LOCAL_RANK"] = env.get("SLURM_LOCALID", "0")


def barrier() -> None:
    """Waits for every process of the group; nothing when not distributed."""
    if dist_info()[1] > 1:
        dist.barrier()


def broadcast_from_main(value):
    """Rank 0's ``value`` (any picklable object) on every process."""
    if dist_info()[1] == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def run_on_main(fn):
    """``fn()`` run by rank 0 only, its result given to every process; an
    exception on rank 0 is raised on every process (the others would
    otherwise wait for a result that never comes)."""
    if dist_info()[1] == 1:
        return fn()
    outcome = None
    if dist_info()[0] == 0:
        try:
            outcome = ("ok", fn())
        except Exception as err:  # noqa: BLE001 - re-raised below, on every rank
            outcome = ("error", err)
    kind, value = broadcast_from_main(outcome)
    if kind == "error":
        if dist_info()[0] == 0:
            raise value
        raise RuntimeError(f"rank 0 failed: {value}") from value
    return value
