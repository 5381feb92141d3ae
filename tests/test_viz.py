import cv2
import numpy as np
import pandas as pd
import pytest

from avapipe.data.video import decode_frames, probe_video, write_video
from avapipe.schemas import COCO_KEYPOINTS, KEYFRAMES, OBJECTS, PART_NAMES, PARTS, PERSONS, POSES
from avapipe.viz import (
    action_captions,
    draw_keyframe,
    keyframe_for_frames,
    match_predictions,
    render_keyframes,
    render_video,
)
from avapipe.viz_draw import GROUNDTRUTH_COLOR, PERSON_COLORS, UNMATCHED_COLOR, upscale

LABELS = {1: "stand", 2: "sit", 3: "walk", 4: "talk to", 5: "watch"}
GRAY = (90, 90, 90)


def gray_image(height=60, width=80):
    return np.full((height, width, 3), GRAY, dtype=np.uint8)


def persons_table(boxes, timestamp=1):
    return pd.DataFrame({
        "video_id": "v", "timestamp": timestamp, "box_id": list(range(len(boxes))),
        "x1": [b[0] for b in boxes], "y1": [b[1] for b in boxes],
        "x2": [b[2] for b in boxes], "y2": [b[3] for b in boxes],
        "score": 1.0, "source": "gt", "person_id": -1,
    })


def action_rows(rows, last="score", timestamp=1):
    """rows: (box, action_id, score or person_id)."""
    return pd.DataFrame({
        "video_id": "v", "timestamp": timestamp,
        "x1": [r[0][0] for r in rows], "y1": [r[0][1] for r in rows],
        "x2": [r[0][2] for r in rows], "y2": [r[0][3] for r in rows],
        "action_id": [r[1] for r in rows], last: [r[2] for r in rows],
    })


def outline_mask(shape, x1, y1, x2, y2, line=1):
    mask = np.zeros(shape[:2], dtype=bool)
    mask[y1:y1 + line, x1:x2 + 1] = mask[y2 - line + 1:y2 + 1, x1:x2 + 1] = True
    mask[y1:y2 + 1, x1:x1 + line] = mask[y1:y2 + 1, x2 - line + 1:x2 + 1] = True
    return mask


def changed(a, b):
    return (a != b).any(axis=2)


def test_person_box_changes_exactly_its_outline():
    image = gray_image()
    out = draw_keyframe(image=image, persons=persons_table([(0.25, 0.25, 0.75, 0.75)]), label_map=LABELS)
    # x: 0.25 * 80 = 20 .. 0.75 * 80 = 60; y: 0.25 * 60 = 15 .. 45
    expected = outline_mask(image.shape, 20, 15, 60, 45)
    np.testing.assert_array_equal(changed(out, image), expected)
    assert tuple(out[15, 33]) == PERSON_COLORS[0] and tuple(out[40, 60]) == PERSON_COLORS[0]
    assert tuple(out[30, 40]) == GRAY  # no fill


def test_scale_upscales_before_drawing_with_wider_lines():
    image = gray_image()
    out = draw_keyframe(image=image, persons=persons_table([(0.25, 0.25, 0.75, 0.75)]), label_map=LABELS, scale=4)
    assert out.shape == (240, 320, 3)
    # scale 4 draws 2-pixel lines: x 80..240, y 60..180
    expected = outline_mask(out.shape, 80, 60, 240, 180, line=2)
    np.testing.assert_array_equal(changed(out, upscale(image, scale=4)), expected)


def test_empty_inputs_draw_nothing():
    image = gray_image()
    empty_actions = action_rows([])
    out = draw_keyframe(
        image=image, persons=PERSONS.empty(), objects=OBJECTS.empty(), poses=POSES.empty(),
        parts=PARTS.empty(), predictions=empty_actions, groundtruth=empty_actions, label_map=LABELS, scale=2,
    )
    np.testing.assert_array_equal(out, upscale(image, scale=2))
    np.testing.assert_array_equal(draw_keyframe(image=image, persons=None, label_map={}), image)


def test_groundtruth_box_is_dashed_with_captions_at_its_bottom():
    image = gray_image(100, 100)
    box = (0.1, 0.1, 0.9, 0.9)  # pixels 10..90
    gt = action_rows([(box, 2, 7), (box, 1, 7)], last="person_id")
    out = draw_keyframe(image=image, persons=None, groundtruth=gt, label_map=LABELS)
    # dashes of 6 pixels, then gaps of 6, along the top edge from x = 10
    assert all(tuple(out[10, x]) == GROUNDTRUTH_COLOR for x in range(10, 16))
    assert all(tuple(out[10, x]) == GRAY for x in range(16, 22))
    assert tuple(out[50, 50]) == GRAY
    # two caption lines stacked up from the bottom-left corner
    assert changed(out, image)[70:90, 11:30].mean() > 0.3


def test_action_captions_are_the_top_k_by_score():
    box = (0.1, 0.1, 0.5, 0.9)
    rows = action_rows([(box, 1, 0.1), (box, 2, 0.9), (box, 3, 0.5), (box, 4, 0.7), (box, 5, 0.5)])
    assert action_captions(predictions=rows, label_map=LABELS, top_k=3) == ["sit 0.90", "talk to 0.70", "walk 0.50"]
    assert action_captions(predictions=rows, label_map=LABELS, top_k=3, min_score=0.6) == ["sit 0.90", "talk to 0.70"]
    assert action_captions(predictions=rows, label_map=LABELS, top_k=0) == []
    assert action_captions(predictions=action_rows([]), label_map=LABELS) == []


def test_unknown_action_id_is_an_error_naming_it():
    rows = action_rows([((0.1, 0.1, 0.5, 0.9), 42, 0.5)])
    with pytest.raises(ValueError, match="action id 42 .*video v, timestamp 1"):
        action_captions(predictions=rows, label_map=LABELS)


def test_match_predictions_greedy_by_iou():
    a, b = (0.0, 0.0, 0.4, 0.4), (0.5, 0.5, 1.0, 1.0)
    b_shifted = (0.55, 0.5, 1.0, 1.0)  # IoU 0.9 with b
    far = (0.0, 0.6, 0.1, 0.7)
    np.testing.assert_array_equal(match_predictions(person_boxes=[a, b], predicted_boxes=[b_shifted, far, a]), [2, 0])
    # IoU with b of (0.5, 0.5, 0.75, 1.0) is 0.5 exactly: a match; (0.5, 0.5, 0.7, 1.0) gives 0.4
    np.testing.assert_array_equal(match_predictions(person_boxes=[b], predicted_boxes=[(0.5, 0.5, 0.75, 1.0)]), [0])
    np.testing.assert_array_equal(match_predictions(person_boxes=[b], predicted_boxes=[(0.5, 0.5, 0.7, 1.0)]), [-1])
    # one predicted box goes to the person it overlaps most, once
    np.testing.assert_array_equal(match_predictions(person_boxes=[b_shifted, b], predicted_boxes=[b]), [-1, 0])
    point = (0.3, 0.3, 0.3, 0.3)
    np.testing.assert_array_equal(match_predictions(person_boxes=[point], predicted_boxes=[point]), [0])
    assert match_predictions(person_boxes=np.zeros((0, 4)), predicted_boxes=[a]).shape == (0,)


def test_matched_prediction_captions_the_person_and_min_score_hides_them():
    image = gray_image(120, 160)
    persons = persons_table([(0.1, 0.1, 0.9, 0.9)])
    preds = action_rows([((0.12, 0.1, 0.9, 0.9), 2, 0.8), ((0.12, 0.1, 0.9, 0.9), 3, 0.4)])
    plain = draw_keyframe(image=image, persons=persons, label_map=LABELS)
    captioned = draw_keyframe(image=image, persons=persons, predictions=preds, label_map=LABELS)
    text_area = changed(captioned, plain)
    assert text_area[13:40, 17:60].mean() > 0.3  # tags below the top-left corner (16, 12)
    assert not text_area[60:, :].any() and not text_area[:, 100:].any()
    hidden = draw_keyframe(image=image, persons=persons, predictions=preds, label_map=LABELS, min_score=0.9)
    np.testing.assert_array_equal(hidden, plain)


def test_prediction_matching_no_person_is_drawn_gray():
    image = gray_image()
    preds = action_rows([((0.25, 0.25, 0.75, 0.75), 1, 0.6)])
    out = draw_keyframe(image=image, persons=None, predictions=preds, label_map=LABELS)
    assert tuple(out[45, 50]) == UNMATCHED_COLOR and tuple(out[30, 60]) == UNMATCHED_COLOR
    hidden = draw_keyframe(image=image, persons=None, predictions=preds, label_map=LABELS, min_score=0.7)
    np.testing.assert_array_equal(hidden, image)


def poses_table(joints):
    row = {"video_id": "v", "timestamp": 1, "box_id": 0}
    for name in COCO_KEYPOINTS:
        x, y, s = joints.get(name, (np.nan, np.nan, 0.0))
        row.update({f"{name}_x": x, f"{name}_y": y, f"{name}_score": s})
    return pd.DataFrame([row])


def test_keypoints_below_threshold_are_not_drawn():
    image = np.zeros((100, 100, 3), dtype=np.uint8)
    poses = poses_table({
        "left_shoulder": (0.2, 0.2, 0.9), "left_elbow": (0.2, 0.6, 0.9),
        "left_wrist": (0.8, 0.6, 0.2),  # below 0.3: neither the joint nor the forearm
    })
    out = draw_keyframe(image=image, persons=None, poses=poses, label_map=LABELS, min_keypoint_score=0.3)
    drawn = changed(out, image)
    assert drawn[40, 20] and drawn[20, 20] and drawn[60, 20]  # upper arm and its joints
    assert not drawn[:, 30:].any()
    lower = draw_keyframe(image=image, persons=None, poses=poses, label_map=LABELS, min_keypoint_score=0.1)
    assert changed(lower, image)[60, 50] and changed(lower, image)[60, 80]


def test_only_valid_parts_are_drawn():
    image = gray_image(100, 100)
    row = {"video_id": "v", "timestamp": 1, "box_id": 0}
    for part in PART_NAMES:
        row.update(dict(zip((f"{part}_{c}" for c in ("x1", "y1", "x2", "y2")), (0.5, 0.5, 0.9, 0.9))))
        row[f"{part}_valid"] = False
    row.update({"head_x1": 0.1, "head_y1": 0.1, "head_x2": 0.3, "head_y2": 0.3, "head_valid": True})
    persons = persons_table([(0.05, 0.05, 0.95, 0.95)])
    with_parts = draw_keyframe(image=image, persons=persons, parts=pd.DataFrame([row]), label_map=LABELS)
    plain = draw_keyframe(image=image, persons=persons, label_map=LABELS)
    np.testing.assert_array_equal(changed(with_parts, plain), outline_mask(image.shape, 10, 10, 30, 30))
    assert tuple(with_parts[10, 20]) == PERSON_COLORS[0]  # the part takes its person's color


def test_bad_tables_are_errors_that_say_why():
    two_keyframes = pd.concat([persons_table([(0, 0, 1, 1)]), persons_table([(0, 0, 1, 1)], timestamp=2)])
    with pytest.raises(ValueError, match="rows of one keyframe"):
        draw_keyframe(image=gray_image(), persons=two_keyframes, label_map=LABELS)
    with pytest.raises(ValueError, match=r"predictions table lacks columns \['score'\]"):
        gt_not_predictions = action_rows([((0, 0, 1, 1), 1, 3)], last="person_id")
        draw_keyframe(image=gray_image(), persons=None, predictions=gt_not_predictions, label_map=LABELS)
    with pytest.raises(ValueError, match="scale"):
        draw_keyframe(image=gray_image(), persons=None, label_map=LABELS, scale=0)
    two_videos = pd.DataFrame({"video_id": ["a", "b"], "timestamp": [1, 1], "time_sec": [1.0, 1.0]})
    with pytest.raises(ValueError, match="rows of one video"):
        render_video(video_path="unused.mp4", keyframes=two_videos, label_map=LABELS, out_path="unused.mp4")


def test_keyframe_for_frames_takes_the_nearest_within_half_a_second():
    times = np.arange(30) / 10
    nearest = keyframe_for_frames(frame_times=times, keyframe_times=np.array([2.0, 1.0]))
    expected = np.full(30, -1)
    expected[5:16] = 1  # 0.5 .. 1.5 s; at 1.5 s both are 0.5 s away and the earlier wins
    expected[16:26] = 0  # 1.6 .. 2.5 s
    np.testing.assert_array_equal(nearest, expected)
    np.testing.assert_array_equal(keyframe_for_frames(frame_times=times, keyframe_times=np.array([])), -1)


def test_keyframe_for_frames_agrees_with_a_brute_force_search():
    rng = np.random.default_rng(0)
    frame_times, keyframe_times = rng.uniform(0, 20, 300), rng.uniform(0, 20, 12)
    gaps = np.abs(frame_times[:, None] - keyframe_times[None, :])
    expected = np.where(gaps.min(axis=1) <= 0.5, gaps.argmin(axis=1), -1)
    np.testing.assert_array_equal(keyframe_for_frames(frame_times=frame_times, keyframe_times=keyframe_times), expected)


HEIGHT, WIDTH, FPS, NUM_FRAMES = 48, 64, 10, 30


def source_frame(index):
    """A smooth background with a bright square that moves one step per frame."""
    frame = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    frame[...] = np.linspace(40, 120, WIDTH, dtype=np.uint8)[None, :, None]
    x = 2 * (index % 25)
    frame[4:12, x:x + 8] = 230
    return frame


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("viz") / "v.mp4"
    write_video(path, (source_frame(i) for i in range(NUM_FRAMES)), fps=FPS)
    return path


def keyframes_table(video, times):
    return KEYFRAMES.validate(pd.DataFrame({
        "video_id": "v", "timestamp": [int(t) for t in times], "split": "val", "video_path": str(video),
        "time_sec": times, "fps": float(FPS), "width": WIDTH, "height": HEIGHT,
    }), source="test")


PERSON_BOX = (0.25, 0.5, 0.75, 0.95)


def test_render_keyframes_writes_one_png_per_keyframe(video, tmp_path):
    preds = action_rows([(PERSON_BOX, 1, 0.7)])
    paths = render_keyframes(keyframes=keyframes_table(video, [1.0, 2.0]), persons=persons_table([PERSON_BOX]),
                             predictions=preds, label_map=LABELS, out_dir=tmp_path / "png", scale=2)
    assert [p.name for p in paths] == ["v_0001.png", "v_0002.png"]
    first = cv2.cvtColor(cv2.imread(str(paths[0])), cv2.COLOR_BGR2RGB)
    second = cv2.cvtColor(cv2.imread(str(paths[1])), cv2.COLOR_BGR2RGB)
    assert first.shape == second.shape == (2 * HEIGHT, 2 * WIDTH, 3)
    # bottom edge of the person box: y = 0.95 * 96 = 91, x from 0.25 * 128 = 32 to 96
    assert tuple(first[91, 60]) == PERSON_COLORS[0]
    assert tuple(second[91, 60]) != PERSON_COLORS[0]  # no persons at second 2


def test_render_video_annotates_frames_near_keyframes_only(video, tmp_path):
    out = tmp_path / "annotated.mp4"
    written = render_video(video_path=video, keyframes=keyframes_table(video, [1.0]),
                           persons=persons_table([PERSON_BOX]), label_map=LABELS, out_path=out, chunk_frames=7)
    assert written == probe_video(out).num_frames == probe_video(video).num_frames == NUM_FRAMES
    source = decode_frames(video, first=0, last=NUM_FRAMES - 1).frames
    result = decode_frames(out, first=0, last=NUM_FRAMES - 1).frames
    outline = outline_mask((HEIGHT, WIDTH), 16, 24, 48, 45)
    for i in range(NUM_FRAMES):
        diff = np.abs(result[i].astype(int) - source[i].astype(int))
        if 5 <= i <= 15:  # within 0.5 s of the keyframe at 1.0 s
            assert diff[outline].mean() > 15, i
        else:  # codec noise only; a frame out of order would miss the moving square by ~200
            assert diff.mean() < 1.5 and diff[outline].mean() < 3 and diff.max() < 30, i
