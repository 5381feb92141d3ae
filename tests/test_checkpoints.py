import functools
import http.server
import os
import pickle
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from avapipe.checkpoints import (
    SHIPPED_CONFIGS,
    CheckpointMismatchError,
    ConfigNotFoundError,
    UnsafeCheckpointError,
    load_trusted_checkpoint,
    load_weights,
    local_checkpoint_path,
    resolve_config,
    trusted_openmmlab_checkpoints,
)

torch.set_num_threads(1)


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def runner_checkpoint(tmp_path_factory) -> tuple[Path, dict]:
    """A checkpoint written by mmengine's Runner after two SGD iterations."""
    from mmengine.dataset import pseudo_collate
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    class Toy(BaseModel):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(2, 1)

        def forward(self, inputs, data_samples=None, mode="tensor"):
            out = self.linear(torch.stack(inputs))
            return {"loss": (out - 1).pow(2).mean()} if mode == "loss" else out

    work_dir = tmp_path_factory.mktemp("runner")
    data = [dict(inputs=torch.full((2,), float(i))) for i in range(4)]
    runner = Runner(
        model=Toy(), work_dir=str(work_dir),
        train_dataloader=torch.utils.data.DataLoader(data, batch_size=2, collate_fn=pseudo_collate),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.01, momentum=0.9)),
        param_scheduler=dict(type="MultiStepLR", milestones=[1], by_epoch=False),
        train_cfg=dict(by_epoch=False, max_iters=2),
        default_hooks=dict(checkpoint=dict(type="CheckpointHook", interval=2, by_epoch=False),
                           logger=dict(type="LoggerHook", interval=1)),
    )
    runner.train()
    weights = {k: v.detach().clone() for k, v in runner.model.state_dict().items()}
    return work_dir / "iter_2.pth", weights


def test_runner_checkpoint_loads_only_with_the_allowlist(runner_checkpoint):
    path, weights = runner_checkpoint
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)  # the failure mmengine 0.10 hits
    with trusted_openmmlab_checkpoints():
        assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
        loaded = torch.load(path, weights_only=True)
    assert {"meta", "state_dict", "message_hub", "optimizer"} <= set(loaded)
    for key, value in weights.items():
        torch.testing.assert_close(loaded["state_dict"][key], value)
    # The allowlist ends with the block.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    assert load_trusted_checkpoint(path)["meta"]["iter"] == 2


def test_malicious_global_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "meta": _Evil(marker)}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.pth.*(posix|os|nt)\.system"):
        load_trusted_checkpoint(path)
    with trusted_openmmlab_checkpoints(), pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)
    assert not marker.exists()


class _Lookup:
    def __init__(self, name: str):
        self.name = name

    def __reduce__(self):
        from mmengine.logging.history_buffer import HistoryBuffer

        return getattr, (HistoryBuffer, self.name)


def test_getattr_in_a_checkpoint_reaches_only_history_buffer_statistics(tmp_path):
    from mmengine.logging.history_buffer import HistoryBuffer

    path = tmp_path / "lookup.pth"
    torch.save({"meta": _Lookup("mean")}, path)
    assert load_trusted_checkpoint(path)["meta"] is HistoryBuffer.mean
    torch.save({"meta": _Lookup("update")}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"lookup\.pth.*getattr\(HistoryBuffer, 'update'\)"):
        load_trusted_checkpoint(path)


class _Numpy1Pickler(pickle._Pickler):
    """Writes numpy's internals under their numpy 1 name ``numpy.core``, as
    checkpoints saved before numpy 2 do."""

    def save_global(self, obj, name=None):
        if getattr(obj, "__module__", "") == "numpy._core.multiarray":
            self.write(pickle.GLOBAL + f"numpy.core.multiarray\n{obj.__name__}\n".encode())
            self.memoize(obj)
            return
        super().save_global(obj, name)


def test_checkpoint_with_numpy1_names_loads(tmp_path):
    module = type("numpy1_pickle", (), {"Pickler": _Numpy1Pickler, "Unpickler": pickle.Unpickler})
    path = tmp_path / "np1.pth"
    payload = {"meta": {"seed": np.int64(7), "hist": np.arange(3.0)}, "state_dict": {"w": torch.ones(2)}}
    torch.save(payload, path, pickle_module=module, pickle_protocol=2)
    with zipfile.ZipFile(path) as z:
        assert b"numpy.core.multiarray" in z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    loaded = load_trusted_checkpoint(path)
    assert loaded["meta"]["seed"] == 7
    np.testing.assert_array_equal(loaded["meta"]["hist"], [0.0, 1.0, 2.0])


def _bn_model():
    return nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))


def test_load_weights_copies_matching_weights():
    source, target = _bn_model(), _bn_model()
    weights = {k: v for k, v in source.state_dict().items() if "num_batches_tracked" not in k}
    load_weights(target, {"state_dict": {f"module.{k}": v for k, v in weights.items()}},
                 config="cfg.py", source="ckpt.pth")
    torch.testing.assert_close(target[0].weight, source[0].weight)


@pytest.mark.parametrize("change, words", [
    (lambda w: w.pop("0.weight"), "1 missing keys (first: 0.weight)"),
    (lambda w: w.update(extra=torch.zeros(1)), "1 unexpected keys (first: extra)"),
    (lambda w: w.update({"0.bias": torch.zeros(5)}), "0.bias (5,) vs (4,)"),
])
def test_load_weights_refuses_a_mismatch_naming_config_and_checkpoint(change, words):
    weights = dict(_bn_model().state_dict())
    change(weights)
    with pytest.raises(CheckpointMismatchError, match="ckpt.pth.*cfg.py") as err:
        load_weights(_bn_model(), {"state_dict": weights}, config="cfg.py", source="ckpt.pth")
    assert words in str(err.value)


def test_resolve_config_by_path_and_name(tmp_path):
    own = tmp_path / "my.py"
    own.write_text("x = 1\n")
    assert resolve_config(own, package="mmdet") == str(own)
    shipped = resolve_config("tiny-faster-rcnn_r18_fpn_coco", package="mmdet")
    assert Path(shipped).parent == SHIPPED_CONFIGS
    mim = Path(resolve_config("faster-rcnn_r50_fpn_1x_coco.py", package="mmdet"))
    assert mim.name == "faster-rcnn_r50_fpn_1x_coco.py" and ".mim" in mim.parts
    with pytest.raises(ConfigNotFoundError, match=r"faster-rcnn_r50_fpn_1x_coco.*\.mim"):
        resolve_config("faster-rcnn_r50_fpn_1x_cocoo", package="mmdet")
    with pytest.raises(ConfigNotFoundError, match="neither a file nor a known config"):
        resolve_config("no_such_model", package="no_such_package")


def test_local_checkpoint_path_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        local_checkpoint_path(tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="scheme 's3'"):
        local_checkpoint_path("s3://bucket/model.pth")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_url_checkpoint_is_downloaded_then_loaded_safely(tmp_path, monkeypatch, runner_checkpoint):
    served = tmp_path / "served"
    served.mkdir()
    (served / "model.pth").write_bytes(runner_checkpoint[0].read_bytes())
    torch.save({"meta": _Evil(tmp_path / "ran")}, served / "evil.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    handler = functools.partial(_QuietHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        loaded = load_trusted_checkpoint(f"{base}/model.pth")
        assert loaded["meta"]["iter"] == 2
        assert (tmp_path / "torch_home" / "hub" / "checkpoints" / "model.pth").is_file()
        with pytest.raises(UnsafeCheckpointError):
            load_trusted_checkpoint(f"{base}/evil.pth")
        assert not (tmp_path / "ran").exists()
    finally:
        server.shutdown()
        server.server_close()


def test_a_non_dict_checkpoint_is_refused(tmp_path):
    path = tmp_path / "tensor.pth"
    torch.save(torch.zeros(2), path)
    with pytest.raises(CheckpointMismatchError, match="tensor.pth.*Tensor"):
        load_trusted_checkpoint(path)
