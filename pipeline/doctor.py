"""Checks that the installed stack is the one avapipe runs on."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

INSTALL_FIX = "run `bash tools/install.sh` from the repository root"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True
    fix: str = INSTALL_FIX


def _version(module: str) -> Check:
    try:
        mod = importlib.import_module(module)
    except Exception as err:  # any import failure is a broken install
        return Check(module, False, f"import failed: {err}")
    return Check(module, True, getattr(mod, "__version__", "unknown version"))


def _mmcv_ops() -> Check:
    """mmcv built without its C++ extension imports fine but lacks ``mmcv._ext``."""
    try:
        import torch
        from mmcv.ops import RoIAlign, nms

        boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 4.0, 3.9]])
        _, keep = nms(boxes, torch.tensor([0.9, 0.8]), iou_threshold=0.5)
        feats = torch.arange(16.0).reshape(1, 1, 4, 4)
        rois = torch.tensor([[0.0, 0.0, 0.0, 3.0, 3.0]])
        pooled = RoIAlign((2, 2), spatial_scale=1.0, sampling_ratio=1)(feats, rois)
    except Exception as err:
        return Check(
            "mmcv.ops", False, f"RoIAlign/nms unavailable: {err}",
            fix="mmcv was built without ops; delete its cached wheel "
            "(~/.cache/avapipe/wheels/mmcv-*) and rerun tools/install.sh",
        )
    ok = keep.tolist() == [0] and tuple(pooled.shape) == (1, 1, 2, 2)
    return Check("mmcv.ops", ok, "RoIAlign, nms loaded" if ok else "wrong results")


def _cuda() -> Check:
    import torch

    available = torch.cuda.is_available()
    detail = torch.cuda.get_device_name(0) if available else "not available (CPU only)"
    return Check("cuda", available, detail, required=False, fix="optional: a GPU")


CHECKS: dict[str, Callable[[], Check]] = {
    name: (lambda name=name: _version(name))
    for name in (
        "torch", "torchvision", "mmcv", "mmengine", "mmdet", "mmpose",
        "pytorchvideo", "dvc", "zarr", "pandas", "av",
    )
}
CHECKS["mmcv.ops"] = _mmcv_ops
CHECKS["cuda"] = _cuda


def run_checks() -> list[Check]:
    return [check() for check in CHECKS.values()]
