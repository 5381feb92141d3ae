import numpy as np
import pandas as pd
import pytest

from avapipe.data import ava
from avapipe.data.synthetic import (
    ACTIONS,
    annotate_video,
    generate_dataset,
    keyframe_seconds,
    normalized_box,
    person_actions,
)
from avapipe.data.synthetic_motion import Beat, Person, SceneObject, person_figure
from avapipe.data.synthetic_scene import Shape, paint
from avapipe.data.synthetic_script import VideoScript, plan_dataset
from avapipe.data.video import decode_frames, probe_video
from avapipe.models.labels import read_groups_csv

COLORS = ((40, 170, 70), (40, 50, 120), (230, 190, 160))
H = 60.0
GAP = 0.34 * 2 * H  # hip distance at which two reaching hands meet
POSES = {"stand", "sit", "walk", "lie/sleep"}


def person(beats, x=60.0) -> Person:
    beats = [Beat(**{"x_from": x, "x_to": x, **b}) for b in beats]
    return Person(beats=tuple(beats), height=H, ground_y=100.0, colors=COLORS)


def labels(persons, objects=(), seconds=None):
    seconds = seconds or range(len(persons[0].beats))
    return [person_actions(tuple(persons), tuple(objects), k) for k in seconds]


def test_wave_is_labelled_only_while_the_hand_waves():
    p = person([{}] * 3 + [{"facing": 1, "arm": "wave"}] * 3 + [{"facing": 1, "arm": "raise"}] * 2 + [{}] * 2)
    got = [names for (names,) in labels([p])]
    assert [k for k, names in enumerate(got) if "hand wave" in names] == [3, 4, 5]
    assert all(names[0] == "stand" for names in got)


def test_kick_is_labelled_while_the_leg_swings():
    p = person([{}] * 2 + [{"facing": -1, "leg": "kick"}] * 2 + [{}])
    assert [names for (names,) in labels([p])] == [["stand"], ["stand"], ["stand", "kick"], ["stand", "kick"],
                                                  ["stand"]]


def test_recovery_is_labelled_4_to_8_seconds_after_getting_up():
    p = person([{"facing": 1}] * 3 + [{"base": "lie", "facing": 1}] * 2 + [{"facing": 1}] * 12)
    got = [names for (names,) in labels([p])]
    assert [k for k, names in enumerate(got) if "lie/sleep" in names] == [3, 4]
    assert [k for k, names in enumerate(got) if "recover after a fall" in names] == [8, 9, 10, 11, 12]


def test_talk_and_listen_need_a_near_upright_partner_facing_back():
    facing = [1, 1, 1, 1, 1, -1, 0, 1]
    left_arms = ["gesture", "rest", "rest", "reach", "reach", "gesture", "gesture", "gesture"]
    right_arms = ["rest", "gesture", "rest", "reach", "reach", "rest", "rest"]
    left = person([{"facing": f, "arm": a} for f, a in zip(facing, left_arms)], x=40.0)
    right = person([{"facing": -1, "arm": a} for a in right_arms] + [{"base": "walk", "x_to": 39.0 + GAP}],
                   x=40.0 + GAP)
    got = labels([left, right])
    talk, listen = "talk to (a person)", "listen to (a person)"
    assert got[0] == [["stand", talk], ["stand", listen]]
    assert got[1] == [["stand", listen], ["stand", talk]]
    assert got[2] == [["stand"], ["stand"]]  # a pause: facing each other, nobody talks
    assert got[3] == got[4] == [["stand", "hand shake"]] * 2  # shaking hands, not counted as talking
    assert got[5] == got[6] == [["stand"]] * 2  # the left one gestures turned away / to the camera
    assert got[7] == [["stand"], ["walk"]]  # gesturing at someone walking past


def test_no_talk_or_hand_shake_when_too_far_apart():
    beats = [{"arm": "gesture"}, {"arm": "reach"}]
    left = person([{**b, "facing": 1} for b in beats], x=30.0)
    right = person([{**b, "facing": -1} for b in beats], x=30.0 + 0.95 * H)
    assert labels([left, right]) == [[["stand"], ["stand"]]] * 2


def test_hold_needs_the_object_in_the_hand():
    phone = SceneObject("phone", rest_x=60.0, ground_y=100.0, height=H)
    beats = [{"arm": "carry", "held": 0}, {"arm": "head", "held": 0}, {"arm": "carry"}]
    p = person([{**b, "facing": 1} for b in beats])
    hold = "carry/hold (an object)"
    assert [n for (n,) in labels([p], [phone])] == [["stand", hold], ["stand", hold], ["stand"]]


def test_watch_is_sitting_while_the_television_is_on():
    tv = SceneObject("tv", rest_x=20.0, ground_y=20.0, height=H, screen=(True, True, False, True, True))
    sitter = person([{"base": "sit", "facing": -1}] * 3 + [{"base": "stand"}, {"base": "sit", "facing": 1}])
    watch = "watch (e.g., TV)"
    assert [n for (n,) in labels([sitter], [tv])] == [["sit", watch], ["sit", watch], ["sit"], ["stand"],
                                                       ["sit", watch]]
    assert [n for (n,) in labels([sitter])] == [["sit"]] * 3 + [["stand"], ["sit"]]  # no television


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_size_shows_every_class_in_each_split_and_one_pose_per_person(seed):
    counts = {"train": set(), "val": set()}
    for video in plan_dataset(seed=seed, num_train_videos=8, num_val_videos=4, seconds=24, width=170, height=128):
        for k in keyframe_seconds(video.seconds):
            for names in person_actions(video.persons, video.objects, k):
                assert len(POSES.intersection(names)) == 1 and len(set(names)) == len(names)
                counts[video.split].update(names)
    assert counts["train"] == counts["val"] == {a.name for a in ACTIONS}


def test_normalized_box_rounds_outwards_and_clips():
    box = normalized_box(np.array([10.01, 20.35, 120.0, 59.95]), width=100, height=100)
    np.testing.assert_allclose(box, [0.100, 0.203, 1.0, 0.600])


def test_gt_box_and_keypoints_match_a_render_of_the_person_alone():
    p = person([{"facing": 1, "arm": "wave"}] * 4, x=70.0)
    video = VideoScript(video_id="abcdefghijk", split="val", width=140, height=110, floor_y=100.0,
                        persons=(p,), objects=(), backdrop_seed=0)
    notes = annotate_video(video)
    assert notes.groundtruth["timestamp"].tolist() == [902, 902]  # stand, hand wave
    assert notes.groundtruth["action_id"].tolist() == [1, 11]
    canvas = np.zeros((110, 140, 3), np.uint8)
    paint(canvas, [Shape(s.kind, s.points, s.radius, (255, 255, 255)) for s in person_figure(p, 2.0).shapes])
    rows, cols = np.flatnonzero(canvas.any(axis=(1, 2))), np.flatnonzero(canvas.any(axis=(0, 2)))
    drawn = np.array([cols[0] / 140, rows[0] / 110, (cols[-1] + 1) / 140, (rows[-1] + 1) / 110])
    box = notes.groundtruth.iloc[0][["x1", "y1", "x2", "y2"]].to_numpy(float)
    assert np.all(box[:2] <= drawn[:2] + 0.5 / 110) and np.all(box[2:] >= drawn[2:] - 0.5 / 110)
    assert np.abs(box - drawn).max() < 2 / 110
    joints = notes.keypoints.iloc[0]
    for name in ("nose", "left_wrist", "right_ankle"):
        x, y = joints[f"{name}_x"] * 140, joints[f"{name}_y"] * 110
        assert canvas[int(y), int(x)].any()
    assert joints["left_eye_v"] == 1 and joints["right_eye_v"] == 2  # facing +x: the left eye is hidden


SMALL = {"num_train_videos": 2, "num_val_videos": 1, "seconds": 8, "fps": 6, "width": 96, "height": 64,
         "num_excluded": 2}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    return generate_dataset(out_dir=out / "a", seed=11, **SMALL), generate_dataset(out_dir=out / "b", seed=11, **SMALL)


def test_generated_files_are_readable_ava(small):
    summary = small[0]
    notes = summary.out_dir / "annotations"
    assert ava.read_label_map(notes / "label_map.pbtxt") == {a.id: a.name for a in ACTIONS}
    train = ava.read_groundtruth_csv(notes / "train.csv", label_ids=[a.id for a in ACTIONS]).rows
    val = ava.read_groundtruth_csv(notes / "val.csv").rows
    assert set(train["video_id"]) == set(summary.train_videos) and set(val["video_id"]) == set(summary.val_videos)
    assert set(train["timestamp"]) | set(val["timestamp"]) == {902, 903, 904, 905, 906}
    excluded = ava.read_excluded_timestamps(notes / "excluded_timestamps.csv")
    assert len(excluded) == 2 and set(excluded["video_id"]) == set(summary.val_videos)
    excluded_keys = set(zip(excluded["video_id"], excluded["timestamp"]))
    assert not excluded_keys & set(zip(val["video_id"], val["timestamp"]))
    poses = train[train["action_id"] <= 4].groupby(["video_id", "timestamp", "person_id"]).size()
    assert (poses == 1).all()
    scripts = plan_dataset(seed=11, **{k: SMALL[k] for k in ("num_train_videos", "num_val_videos", "seconds",
                                                               "width", "height")})
    boxes = sum(len(v.persons) * len(keyframe_seconds(v.seconds)) for v in scripts)
    keypoints = pd.read_csv(notes / "keypoints.csv", dtype={"video_id": str})
    objects = pd.read_csv(notes / "objects.csv", dtype={"video_id": str})
    assert len(keypoints) == summary.num_person_boxes == boxes
    assert len(objects) == sum(len(v.objects) * len(keyframe_seconds(v.seconds)) for v in scripts)
    assert set(objects["label"]) <= {"ball", "cup", "phone", "tv"}
    assert read_groups_csv(notes / "groups.csv") == {a.id: a.group for a in ACTIONS}
    assert {a.group for a in ACTIONS} == {"pose", "person-object", "person-person", "memory", "part-motion"}


def test_generated_videos_match_the_requested_format(small):
    summary = small[0]
    for video_id in summary.train_videos + summary.val_videos:
        info = probe_video(summary.out_dir / "videos" / f"{video_id}.mp4")
        assert (info.fps, info.num_frames, info.width, info.height) == (6.0, 48, 96, 64)


def test_same_seed_gives_identical_files_and_frames(small):
    first, second = small
    for name in ("train.csv", "val.csv", "keypoints.csv", "objects.csv", "excluded_timestamps.csv"):
        a, b = (s.out_dir / "annotations" / name for s in (first, second))
        assert a.read_bytes() == b.read_bytes()
    assert first.train_videos == second.train_videos
    for video_id in first.train_videos + first.val_videos:
        a = decode_frames(first.out_dir / "videos" / f"{video_id}.mp4", first=0, last=47).frames
        b = decode_frames(second.out_dir / "videos" / f"{video_id}.mp4", first=0, last=47).frames
        assert all(np.array_equal(a[i], b[i]) for i in range(48))


def test_another_seed_gives_other_videos(small, tmp_path):
    other = generate_dataset(out_dir=tmp_path, seed=12, **{**SMALL, "num_train_videos": 1, "num_val_videos": 0})
    assert other.train_videos[0] not in small[0].train_videos
    mine = (small[0].out_dir / "annotations" / "train.csv").read_bytes()
    assert (tmp_path / "annotations" / "train.csv").read_bytes() != mine
