import pickle
import time

import numpy as np
import pandas as pd
import pytest
import torch
from openmmlab_checkpoints import FRAME_HEIGHT as HEIGHT
from openmmlab_checkpoints import FRAME_WIDTH as WIDTH
from openmmlab_checkpoints import POSE_CONFIG as CONFIG
from openmmlab_checkpoints import decoded_keyframes, mmpose_0x_pose_checkpoint, random_pose_checkpoint

from avapipe.checkpoints import CheckpointMismatchError, resolve_config, trusted_openmmlab_checkpoints
from avapipe.perception.parts import part_boxes
from avapipe.perception.pose import estimate_poses, load_pose_model, poses_from_gt
from avapipe.schemas import COCO_KEYPOINTS, KEYPOINT_COLUMNS, POSES

torch.set_num_threads(1)
XS = [f"{j}_x" for j in COCO_KEYPOINTS]
YS = [f"{j}_y" for j in COCO_KEYPOINTS]
SCORES = [f"{j}_score" for j in COCO_KEYPOINTS]


@pytest.fixture(scope="module")
def keyframe_images(tmp_path_factory):
    return decoded_keyframes(tmp_path_factory.mktemp("video"))


@pytest.fixture(scope="module")
def pose_checkpoint(tmp_path_factory):
    return random_pose_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_pose.pth")


@pytest.fixture(scope="module")
def pose_model(pose_checkpoint):
    return load_pose_model(config=CONFIG, checkpoint=str(pose_checkpoint), device="cpu")


def persons_table(rows):
    """rows: (timestamp, box_id, x1, y1, x2, y2, person_id)."""
    df = pd.DataFrame(rows, columns=["timestamp", "box_id", "x1", "y1", "x2", "y2", "person_id"])
    df.insert(0, "video_id", "clip")
    df["score"], df["source"] = 1.0, "test"
    return df


PERSONS_ROWS = [
    (0, 0, 0.25, 0.2, 0.45, 0.85, -1),
    (0, 1, 0.5, 0.1, 0.5, 0.6, -1),  # zero width
    (1, 0, 0.1, 0.1, 0.9, 0.9, -1),
    (1, 1, 0.6, 0.3, 0.8, 0.7, -1),
]


def test_init_model_loads_an_openmmlab_checkpoint_only_when_trusted(pose_checkpoint):
    from mmpose.apis import init_model

    config = resolve_config(CONFIG, package="mmpose")
    with pytest.raises(pickle.UnpicklingError):
        init_model(config, str(pose_checkpoint), device="cpu")
    with trusted_openmmlab_checkpoints():
        model = init_model(config, str(pose_checkpoint), device="cpu")
    assert model.dataset_meta["num_keypoints"] == 17


def test_estimate_poses_on_decoded_frames(pose_model, keyframe_images):
    persons = persons_table(PERSONS_ROWS)
    start = time.perf_counter()
    poses = estimate_poses(model=pose_model, images=keyframe_images, persons=persons,
                           batch_size=2, progress=False)
    elapsed = time.perf_counter() - start
    print(f"pose: {len(keyframe_images) / elapsed:.1f} keyframes/s, "
          f"{len(persons) / elapsed:.1f} boxes/s")
    POSES.validate(poses, source="test")
    assert list(zip(poses.timestamp, poses.box_id)) == [(r[0], r[1]) for r in PERSONS_ROWS]
    degenerate = poses.iloc[1]
    assert (degenerate[XS] == 0.5).all() and np.allclose(degenerate[YS].astype(float), 0.35)
    assert (degenerate[SCORES] == 0).all()
    for i in (0, 2, 3):
        _assert_inside_crop(poses.iloc[i], PERSONS_ROWS[i][2:6])
    parts = part_boxes(poses=poses, persons=persons, min_score=0.0)
    assert len(parts) == len(persons)


def _assert_inside_crop(pose, box):
    """Top-down keypoints lie in the model's crop (the box x1.25, widened or
    heightened to the 96:128 input aspect ratio) give or take one cell of the
    24x32 heatmap: mmpose puts a joint whose heatmap peak is <= 0 at cell -1."""
    x1, y1, x2, y2 = np.array(box) * [WIDTH, HEIGHT, WIDTH, HEIGHT]
    w, h = (x2 - x1) * 1.25, (y2 - y1) * 1.25
    w, h = (w, w / 0.75) if w > 0.75 * h else (h * 0.75, h)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    xs = pose[XS].to_numpy(float) * WIDTH
    ys = pose[YS].to_numpy(float) * HEIGHT
    assert np.isfinite(xs).all() and np.isfinite(ys).all()
    assert (np.abs(xs - cx) <= w / 2 + w / 24 + 1e-3).all()
    assert (np.abs(ys - cy) <= h / 2 + h / 32 + 1e-3).all()


def test_batched_poses_agree_with_mmpose_inference_topdown(pose_model, keyframe_images):
    from mmpose.apis import inference_topdown

    persons = persons_table([r for r in PERSONS_ROWS if r[1] != 1 or r[0] != 0])
    poses = estimate_poses(model=pose_model, images=keyframe_images, persons=persons,
                           batch_size=3, progress=False)
    for (_, ts), image in keyframe_images:
        rows = persons[persons.timestamp == ts]
        if rows.empty:
            continue
        boxes = rows[["x1", "y1", "x2", "y2"]].to_numpy(float) * [WIDTH, HEIGHT, WIDTH, HEIGHT]
        results = inference_topdown(pose_model, np.ascontiguousarray(image[..., ::-1]), boxes)
        got = poses[poses.timestamp == ts]
        for result, (_, pose) in zip(results, got.iterrows()):
            xy = result.pred_instances.keypoints[0] / [WIDTH, HEIGHT]
            np.testing.assert_allclose(pose[XS].to_numpy(float), xy[:, 0], atol=1e-5)
            np.testing.assert_allclose(pose[YS].to_numpy(float), xy[:, 1], atol=1e-5)
            np.testing.assert_allclose(pose[SCORES].to_numpy(float),
                                       result.pred_instances.keypoint_scores[0], atol=1e-5)


def test_keyframe_without_image_and_empty_persons(pose_model, keyframe_images):
    persons = persons_table([(7, 0, 0.1, 0.1, 0.5, 0.5, -1)])
    with pytest.raises(ValueError, match=r"\('clip', 7\)"):
        estimate_poses(model=pose_model, images=keyframe_images, persons=persons,
                       batch_size=2, progress=False)
    empty = estimate_poses(model=pose_model, images=keyframe_images, persons=persons.iloc[:0],
                           batch_size=2, progress=False)
    assert len(empty) == 0 and list(empty.columns) == POSES.column_names


def test_mmpose_0x_checkpoint_loads_as_init_model_loads_it(tmp_path, keyframe_images):
    """0.x's ``keypoint_head.*`` is renamed by mmpose 1.x's own load hook
    before the key check, as ``mmpose.apis.init_model`` does with the file."""
    from mmpose.apis import init_model

    path, made_from = mmpose_0x_pose_checkpoint(tmp_path / "hrnet_w32_coco_256x192-c78dce93_20200708.pth")
    model = load_pose_model(config=CONFIG, checkpoint=str(path), device="cpu")
    with trusted_openmmlab_checkpoints():
        reference = init_model(resolve_config(CONFIG, package="mmpose"), str(path), device="cpu")
    for name, value in made_from.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value)
        torch.testing.assert_close(reference.state_dict()[name], value)
    persons = persons_table(PERSONS_ROWS[2:])
    ours = estimate_poses(model=model, images=keyframe_images, persons=persons, batch_size=2,
                          progress=False)
    theirs = estimate_poses(model=reference, images=keyframe_images, persons=persons, batch_size=2,
                            progress=False)
    pd.testing.assert_frame_equal(ours, theirs)


def test_pose_checkpoint_that_does_not_fit_its_config(pose_checkpoint):
    with pytest.raises(CheckpointMismatchError, match=r"tiny_pose\.pth.*td-hm_res50"):
        load_pose_model(config="td-hm_res50_8xb64-210e_coco-256x192",
                        checkpoint=str(pose_checkpoint), device="cpu")


def gt_keypoints(rows):
    """rows: (timestamp, person_id, {joint: (x, y, visibility)})."""
    out = []
    for ts, pid, joints in rows:
        row = {"video_id": "clip", "timestamp": ts, "person_id": pid}
        for name in COCO_KEYPOINTS:
            x, y, v = joints.get(name, (0.0, 0.0, 0.0))
            row.update({f"{name}_x": x, f"{name}_y": y, f"{name}_score": v})
        out.append(row)
    return pd.DataFrame(out)


def test_poses_from_gt_by_person_id_then_by_overlap():
    keypoints = gt_keypoints([
        (0, 4, {"nose": (0.3, 0.2, 2), "left_ankle": (0.35, 0.8, 1)}),
        (0, 9, {"nose": (0.7, 0.2, 2), "right_ankle": (0.75, 0.9, 2)}),
        (0, 5, {"nose": (0.1, 0.1, 2), "left_knee": (0.15, 0.3, 2)}),
        (1, 4, {}),  # nothing labelled
    ])
    persons = persons_table([
        (0, 0, 0.6, 0.1, 0.9, 0.95, 9),  # by id
        (0, 1, 0.25, 0.15, 0.45, 0.85, -1),  # overlaps person 4's keypoints most
        (0, 2, 0.5, 0.5, 0.55, 0.55, -1),  # overlaps nothing left
        (1, 0, 0.1, 0.2, 0.3, 0.4, 4),  # an empty GT pose: kept as given
        (2, 0, 0.0, 0.0, 0.2, 0.2, -1),  # no GT in this keyframe
    ])
    poses = poses_from_gt(keypoints=keypoints, persons=persons)
    assert len(poses) == 5
    assert poses.iloc[0]["nose_x"] == pytest.approx(0.7)
    assert poses.iloc[0]["right_ankle_score"] == 2
    assert poses.iloc[1]["nose_x"] == pytest.approx(0.3)
    assert poses.iloc[1]["left_ankle_y"] == pytest.approx(0.8)
    for i, centre in ((2, (0.525, 0.525)), (4, (0.1, 0.1))):
        assert np.allclose(poses.iloc[i][XS].astype(float), centre[0])
        assert np.allclose(poses.iloc[i][YS].astype(float), centre[1])
        assert (poses.iloc[i][SCORES] == 0).all()
    assert (poses.iloc[3][list(KEYPOINT_COLUMNS)] == 0).all()
    with pytest.raises(ValueError, match="lacks columns"):
        poses_from_gt(keypoints=keypoints.drop(columns="nose_x"), persons=persons)
