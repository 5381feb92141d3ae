import json
import math
import os
import pickle
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.distributed as dist

from avapipe.distributed import (
    DistributedSetupError, barrier, broadcast_from_main, dist_info, init_from_env,
    launcher_from_env,
)
from avapipe.models.predict import load_classifier
from test_extract import CLIP, RUN, arrays_of, inputs, reference  # noqa: F401 (fixtures)
from test_train import chance_map, make_task

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def torchrun(tmp_path: Path, script: str, *args: str) -> None:
    """Runs ``script`` as two gloo processes under torchrun; fails with their output."""
    path = tmp_path / "worker.py"
    path.write_text(textwrap.dedent(script))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "-1"}
    done = subprocess.run([*TORCHRUN, str(path), *args], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]


def test_launcher_is_read_from_torchrun_and_slurm_variables():
    assert launcher_from_env({}) == "none"
    assert launcher_from_env({"WORLD_SIZE": "1", "RANK": "0"}) == "none"
    assert launcher_from_env({"WORLD_SIZE": "2"}) == "pytorch"
    srun_task = {"SLURM_NTASKS": "4", "SLURM_STEP_NUM_TASKS": "4", "SLURM_PROCID": "3"}
    assert launcher_from_env(srun_task) == "slurm"
    assert launcher_from_env({"SLURM_NTASKS": "4", "SLURM_PROCID": "0"}) == "none"  # batch script
    assert launcher_from_env({"SLURM_STEP_NUM_TASKS": "1", "SLURM_PROCID": "0"}) == "none"
    assert launcher_from_env({**srun_task, "WORLD_SIZE": "2"}) == "pytorch"


def test_one_process_helpers_are_no_ops_and_bad_setups_are_named(monkeypatch):
    for name in ("WORLD_SIZE", "SLURM_STEP_NUM_TASKS", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert dist_info() == (0, 1)
    assert init_from_env(device="cpu") is False
    barrier()
    assert broadcast_from_main({"a": 1}) == {"a": 1}
    with pytest.raises(DistributedSetupError, match="launcher 'mpi'"):
        init_from_env(device="cpu", launcher="mpi")
    with pytest.raises(DistributedSetupError, match="RANK"):
        init_from_env(device="cpu", launcher="pytorch")
    assert not dist.is_initialized()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_slurm_task_variables_become_a_process_group(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT"):
        monkeypatch.setenv(name, "unset")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_LOCALID", "0")
    try:
        assert init_from_env(device="cpu", launcher="slurm") is True
        assert dist_info() == (0, 1) and dist.get_backend() == "gloo"
        assert (os.environ["WORLD_SIZE"], os.environ["RANK"], os.environ["LOCAL_RANK"]) == ("1", "0", "0")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


EXTRACT_WORKER = """
    import json, sys
    from pathlib import Path
    import pandas as pd, torch
    torch.set_num_threads(1)
    from avapipe.distributed import dist_info, init_from_env
    from avapipe.features.backbone import ClipSpec, FeatureExtractor, build_slowfast
    from avapipe.features.backbone_checkpoint import load_backbone_checkpoint
    from avapipe.features.extract import extract_features
    assert init_from_env(device="cpu")
    folder, store, clip, run = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4])
    net = build_slowfast(width_divisor=4, num_classes=5)
    load_backbone_checkpoint(net, folder / "backbone.pt")
    tables = {n: pd.read_parquet(folder / f"{n}.parquet") for n in ("keyframes", "persons", "objects", "parts")}
    summaries = [extract_features(**tables, extractor=FeatureExtractor(net), clip=ClipSpec(**clip),
                                  store_path=store, num_workers=0, progress=False, **run).computed
                 for _ in range(2)]  # the second call finds the store complete
    rank, world_size = dist_info()
    (store.parent / f"rank{rank}.json").write_text(json.dumps([world_size, summaries]))
"""


def test_two_processes_write_the_store_of_one_process(inputs, reference, tmp_path):  # noqa: F811
    store = tmp_path / "out" / "features.zarr"
    store.parent.mkdir()
    torchrun(tmp_path, EXTRACT_WORKER, str(inputs["folder"]), str(store), json.dumps(CLIP),
             json.dumps(RUN))
    reports = [json.loads((store.parent / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert reports == [[2, [2, 0]], [2, [2, 0]]]  # 4 videos with boxes, split 2 + 2
    expected, ref = arrays_of(reference[0])
    got, again = arrays_of(store)
    for name in expected:
        assert expected[name].dtype == got[name].dtype
        assert (expected[name] == got[name]).all(), name
    for table in ("persons", "objects", "videos"):
        pd.testing.assert_frame_equal(getattr(ref, table), getattr(again, table))
    assert not (store / "progress").exists()


TRAIN_WORKER = """
    import json, pickle, sys
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    from avapipe.distributed import dist_info
    from avapipe.models.train import train_classifier
    task, settings = pickle.loads(Path(sys.argv[1]).read_bytes())
    result = train_classifier(**task, **settings, launcher="pytorch")
    rank, world_size = dist_info()
    (Path(settings["work_dir"]) / f"rank{rank}.json").write_text(json.dumps(
        [world_size, str(result.last_checkpoint), str(result.checkpoint),
         result.curves.to_dict(orient="list")]))
"""


def test_ddp_training_splits_the_data_and_its_checkpoint_loads_in_one_process(tmp_path):
    task = make_task(tmp_path / "task", train_videos=4, val_videos=2, seconds=8)
    work_dir = tmp_path / "run"
    settings = dict(fusion="serial", pose_part=False, hidden=16, epochs=3, lr=1e-2,
                    batch_size=4, seed=0, device="cpu", work_dir=str(work_dir), dropout=0.2,
                    resume=False)
    (tmp_path / "task.pkl").write_bytes(pickle.dumps((task, settings)))
    torchrun(tmp_path, TRAIN_WORKER, str(tmp_path / "task.pkl"))
    reports = [json.loads((work_dir / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert reports[0] == reports[1] and reports[0][0] == 2  # same result on both ranks
    curves = pd.DataFrame(reports[0][3])
    assert Path(reports[0][2]).is_file()  # the best epoch's checkpoint
    assert list(curves["epoch"]) == [1, 2, 3]
    pd.testing.assert_frame_equal(pd.read_csv(work_dir / "training_curves.csv"), curves,
                                  check_dtype=False)
    checkpoint = Path(reports[0][1])
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert not any(k.startswith("module.") for k in saved["state_dict"])
    # 32 train keyframes over 2 processes at 4 per batch: 4 steps per epoch, not 8.
    keyframes = len(task["train_keyframes"])
    assert saved["meta"]["iter"] == 3 * math.ceil(keyframes / 2 / 4) == 12
    model = load_classifier(checkpoint)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, saved["state_dict"][name]), name
    assert curves["val_mAP"].max() > chance_map(task) + 0.15
