"""Random-weight OpenMMLab models saved the way a user's checkpoint is saved."""

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
