import pickle
import time

import numpy as np
import pandas as pd
import pytest
import torch
from openmmlab_checkpoints import FRAME_HEIGHT as HEIGHT
from openmmlab_checkpoints import FRAME_WIDTH as WIDTH
from openmmlab_checkpoints import DETECTOR_CONFIG as CONFIG
from openmmlab_checkpoints import decoded_keyframes, mmdet_2x_detector_checkpoint, random_detector_checkpoint

from avapipe.checkpoints import (
    CheckpointMismatchError,
    ConfigNotFoundError,
    resolve_config,
    trusted_openmmlab_checkpoints,
)
from avapipe.perception.detect import (
    detect_keyframes,
    keyframe_detections,
    load_detector,
    person_class_index,
)
from avapipe.schemas import OBJECTS, PERSONS

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def keyframe_images(tmp_path_factory):
    return decoded_keyframes(tmp_path_factory.mktemp("video"))


@pytest.fixture(scope="module")
def detector_checkpoint(tmp_path_factory):
    return random_detector_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_det.pth")


@pytest.fixture(scope="module")
def detector(detector_checkpoint):
    return load_detector(config=CONFIG, checkpoint=str(detector_checkpoint), device="cpu")


def test_init_detector_loads_an_openmmlab_checkpoint_only_when_trusted(detector_checkpoint):
    from mmdet.apis import init_detector

    config = resolve_config(CONFIG, package="mmdet")
    with pytest.raises(pickle.UnpicklingError):
        init_detector(config, str(detector_checkpoint), device="cpu")
    with trusted_openmmlab_checkpoints():
        model = init_detector(config, str(detector_checkpoint), device="cpu")
    assert model.dataset_meta["classes"][0] == "person"


def test_detect_on_decoded_frames(detector, keyframe_images):
    start = time.perf_counter()
    persons, objects = detect_keyframes(
        detector=detector, images=keyframe_images, score_thr=0.0, batch_size=2,
        object_topk=3, object_score_thr=0.0, progress=False)
    elapsed = time.perf_counter() - start
    print(f"detect: {len(keyframe_images) / elapsed:.1f} keyframes/s")
    PERSONS.validate(persons, source="test")
    OBJECTS.validate(objects, source="test")
    assert len(persons) > 0 and len(objects) > 0
    keys = {key for key, _ in keyframe_images}
    assert set(zip(persons.video_id, persons.timestamp)) <= keys
    assert (persons.source == "detector").all() and (persons.person_id == -1).all()
    assert objects.groupby(["video_id", "timestamp"]).size().max() <= 3
    classes = detector.dataset_meta["classes"]
    assert set(objects.label) <= set(classes) - {"person"}
    for _, frame in persons.groupby(["video_id", "timestamp"]):
        assert frame.score.is_monotonic_decreasing
        assert list(frame.box_id) == list(range(len(frame)))


def test_batched_detection_agrees_with_mmdet_per_image_inference(detector, keyframe_images):
    from mmdet.apis import inference_detector

    rules = dict(score_thr=0.0, object_topk=3, object_score_thr=0.0)
    persons, _ = detect_keyframes(detector=detector, images=keyframe_images, batch_size=3,
                                  progress=False, **rules)
    expected = []
    for key, image in keyframe_images:
        pred = inference_detector(detector, np.ascontiguousarray(image[..., ::-1])).pred_instances
        rows, _, _ = keyframe_detections(
            key=key, boxes_px=pred.bboxes.numpy(), scores=pred.scores.numpy(),
            labels=pred.labels.numpy(), width=WIDTH, height=HEIGHT,
            class_names=detector.dataset_meta["classes"], **rules)
        expected += rows
    assert len(persons) == len(expected)
    # the same boxes per keyframe; their order may differ where two scores tie to ~1e-7
    # (batched convolutions round differently), so both sides are sorted by position
    columns = ["video_id", "timestamp", "x1", "y1", "x2", "y2", "score"]
    expected = pd.DataFrame([row[:2] + row[3:] for row in expected], columns=columns)
    got, expected = (table[columns].sort_values(columns[:3]).to_numpy()[:, 2:].astype(np.float64)
                     for table in (persons, expected))
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_nothing_detected_gives_empty_valid_tables(detector, keyframe_images):
    for images in (keyframe_images[:1], []):
        persons, objects = detect_keyframes(
            detector=detector, images=images, score_thr=1.01, batch_size=2,
            object_topk=3, object_score_thr=1.01, progress=False)
        assert len(persons) == 0 and list(persons.columns) == PERSONS.column_names
        assert len(objects) == 0 and list(objects.columns) == OBJECTS.column_names


def test_bad_image_names_the_keyframe(detector):
    with pytest.raises(ValueError, match=r"\('clip', 4\).*uint8 RGB"):
        detect_keyframes(detector=detector, images=[(("clip", 4), np.zeros((8, 8), np.uint8))],
                         score_thr=0.5, batch_size=1, object_topk=1,
                         object_score_thr=0.5, progress=False)


def test_keyframe_detections_rules_by_hand():
    classes = ("person", "bicycle", "car")
    persons, objects, dropped = keyframe_detections(
        key=("v", 902),
        boxes_px=np.array([[20, 10, 60, 90], [0, 0, 100, 50], [100, 20, 140, 60],
                           [10, 10, 20, 20], [50, 50, 250, 150], [0, 0, 1, 1]]),
        scores=np.array([0.6, 0.9, 0.4, np.nan, 0.8, 0.7]),
        labels=np.array([0, 0, 0, 0, 2, 1]),
        width=200, height=100, class_names=classes, score_thr=0.5,
        object_topk=1, object_score_thr=0.1)
    assert dropped == 1
    # best person first, as detected (enlarging is for pooling only): (0,0,100,50)/(200,100)
    np.testing.assert_allclose(persons[0][3:], [0.0, 0.0, 0.5, 0.5, 0.9])
    np.testing.assert_allclose(persons[1][3:], [0.1, 0.1, 0.3, 0.9, 0.6])  # (20,10,60,90)
    assert [p[2] for p in persons] == [0, 1]  # 0.4 is below score_thr
    # objects: the single best non-person, clipped to the frame, no enlargement
    assert len(objects) == 1
    assert objects[0][:3] == ("v", 902, 0) and objects[0][-1] == "car"
    np.testing.assert_allclose(objects[0][3:8], [0.25, 0.5, 1.0, 1.0, 0.8])
    none = keyframe_detections(key=("v", 1), boxes_px=np.zeros((0, 4)), scores=np.zeros(0),
                               labels=np.zeros(0), width=10, height=10, class_names=classes,
                               score_thr=0.5, object_topk=5, object_score_thr=0.1)
    assert none == ([], [], 0)


def test_a_detector_without_a_person_class_is_refused():
    assert person_class_index(["Car", "PERSON"]) == 1
    with pytest.raises(ValueError, match="no 'person'"):
        person_class_index(["car", "dog"])


def test_mmdet_2x_checkpoint_loads_with_its_classes(tmp_path, keyframe_images):
    path, made_from = mmdet_2x_detector_checkpoint(
        tmp_path / "faster_rcnn_r50_fpn_2x_coco_bbox_mAP-0.384_20200504_210434-a5d8aa15.pth")
    model = load_detector(config=CONFIG, checkpoint=str(path), device="cpu")
    for name, value in made_from.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], value)
    assert list(model.dataset_meta["classes"]) == list(made_from.dataset_meta["classes"])
    rules = dict(images=keyframe_images, score_thr=0.0, batch_size=2, object_topk=3,
                 object_score_thr=0.0, progress=False)
    ours, theirs = (detect_keyframes(detector=m, **rules) for m in (model, made_from.eval()))
    for got, expected in zip(ours, theirs):
        pd.testing.assert_frame_equal(got, expected)
    assert len(ours[1]) > 0


def test_checkpoint_that_does_not_fit_its_config(detector_checkpoint):
    with pytest.raises(CheckpointMismatchError, match=r"tiny_det\.pth.*faster-rcnn_r50_fpn_1x_coco\.py.*shape"):
        load_detector(config="faster-rcnn_r50_fpn_1x_coco", checkpoint=str(detector_checkpoint),
                      device="cpu")


def test_unknown_config_name():
    with pytest.raises(ConfigNotFoundError, match="faster-rcnn_r50_fpn_1x_coco"):
        load_detector(config="faster-rcnn_r50_fpn_1x_cocco", checkpoint="unused.pth", device="cpu")
