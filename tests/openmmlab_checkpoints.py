"""Random-weight OpenMMLab models saved the way a user's checkpoint is saved."""

import re
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from avapipe.checkpoints import resolve_config

DETECTOR_CONFIG = "tiny-faster-rcnn_r18_fpn_coco"
POSE_CONFIG = "tiny-td-hm_res18_coco-128x96"


def save_openmmlab_checkpoint(model: torch.nn.Module, path) -> None:
    """Saves ``model`` the way mmengine's Runner does: meta with dataset_meta,
    weights, message hub (numpy history buffers) and optimizer state."""
    from mmengine.logging import MessageHub
    from mmengine.runner.checkpoint import get_state_dict, save_checkpoint, weights_to_cpu

    hub = MessageHub.get_instance("avapipe-test-checkpoint")
    hub.update_scalar("train/loss", np.float64(0.5))
    hub.update_info("iter", 1)
    save_checkpoint({
        "meta": dict(epoch=1, iter=1, seed=np.int64(0), experiment_name="test",
                     dataset_meta=dict(model.dataset_meta)),
        "state_dict": weights_to_cpu(get_state_dict(model)),
        "message_hub": hub.state_dict(),
        "optimizer": torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9).state_dict(),
    }, str(path))


def random_detector_checkpoint(path: Path) -> Path:
    """The tiny detector with random weights, biased so that most of its
    detections are persons."""
    from mmdet.apis import init_detector

    torch.manual_seed(0)
    model = init_detector(resolve_config(DETECTOR_CONFIG, package="mmdet"), device="cpu")
    with torch.no_grad():
        model.roi_head.bbox_head.fc_cls.bias[0] += 4.0  # class 0: person
    save_openmmlab_checkpoint(model, path)
    return path


def random_pose_checkpoint(path: Path) -> Path:
    from mmpose.apis import init_model

    torch.manual_seed(0)
    model = init_model(resolve_config(POSE_CONFIG, package="mmpose"), device="cpu")
    save_openmmlab_checkpoint(model, path)
    return path


def _save_as_mmcv1(state: OrderedDict, meta: dict, path: Path) -> Path:
    """As mmcv 1.x's ``save_checkpoint`` + ``publish_model`` left a model-zoo
    file in 2020: meta and state_dict only, torch's pre-1.6 (non-zip) format,
    and no ``data_preprocessor`` (an OpenMMLab 2.x module)."""
    metadata = state._metadata
    state = OrderedDict((k, v) for k, v in state.items() if not k.startswith("data_preprocessor."))
    state._metadata = metadata
    meta = dict(meta, mmcv_version="1.0.2", time="Wed Jul  8 14:33:21 2020", epoch=210, iter=1000,
                env_info="sys.platform: linux\nPyTorch: 1.5.0", seed=0)
    torch.save({"meta": meta, "state_dict": state}, path, _use_new_zipfile_serialization=False)
    return path


def mmpose_0x_pose_checkpoint(path: Path) -> tuple[Path, torch.nn.Module]:
    """The tiny pose model's random weights in mmpose 0.x's layout (e.g. the
    README's ``hrnet_w32_coco_256x192.pth``): the head under ``keypoint_head.``
    (0.x's TopdownHeatmapSimpleHead: ``deconv_layers.N``, ``final_layer``), and
    module version 1 for the detector and head classes, which had no
    ``_version`` then. Returns the file and the 1.x model it was made from."""
    from mmpose.apis import init_model

    torch.manual_seed(1)
    model = init_model(resolve_config(POSE_CONFIG, package="mmpose"), device="cpu")
    state = model.state_dict()
    old = OrderedDict((re.sub(r"^head\.", "keypoint_head.", k), v) for k, v in state.items())
    old._metadata = OrderedDict((re.sub(r"^head(?=\.|$)", "keypoint_head", k), dict(v))
                                for k, v in state._metadata.items())
    for prefix in ("", "keypoint_head"):
        old._metadata[prefix]["version"] = 1
    meta = dict(mmpose_version="0.28.0", config="model = dict(type='TopDown', ...)")
    return _save_as_mmcv1(old, meta, path), model


def mmdet_2x_detector_checkpoint(path: Path) -> tuple[Path, torch.nn.Module]:
    """The tiny detector's random weights as an mmdet 2.x model-zoo file:
    ``meta`` with ``CLASSES`` (3.x keeps ``dataset_meta``), mmdet and mmcv 1.x
    versions, the config text; no message hub."""
    from mmdet.apis import init_detector

    torch.manual_seed(2)
    model = init_detector(resolve_config(DETECTOR_CONFIG, package="mmdet"), device="cpu")
    meta = dict(mmdet_version="2.25.0", CLASSES=tuple(model.dataset_meta["classes"]),
                exp_name="faster_rcnn_r50_fpn_2x_coco.py", config="model = dict(type='FasterRCNN')")
    return _save_as_mmcv1(model.state_dict(), meta, path), model


FRAME_WIDTH, FRAME_HEIGHT = 160, 96


def synthetic_frames(count: int):
    """Gradient frames with a skin-coloured block moving right, one per index."""
    yy, xx = np.mgrid[0:FRAME_HEIGHT, 0:FRAME_WIDTH]
    for i in range(count):
        frame = np.stack([xx * 255 // FRAME_WIDTH, yy * 255 // FRAME_HEIGHT,
                          np.full_like(xx, 7 * i % 256)], -1).astype(np.uint8)
        frame[20:80, 40 + i:70 + i] = (230, 200, 180)
        yield frame


def decoded_keyframes(folder: Path) -> list:
    """Three keyframes ``((video_id, second), image)`` decoded from a real H.264 file."""
    from avapipe.data.video import read_frame, write_video

    path = Path(folder) / "clip.mp4"
    write_video(path, synthetic_frames(45), fps=15)
    return [(("clip", t), read_frame(path, time_sec=t + 0.5)) for t in range(3)]
