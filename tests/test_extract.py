import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from avapipe.data.video import read_clip, write_video
from avapipe.features.backbone import (
    ClipSpec, FeatureExtractor, boxes_to_rois, build_slowfast, clips_to_pathways, pool_rois,
)
from avapipe.features.extract import extract_features, jittered_copies
from avapipe.features.store import IncompleteStoreError, open_features, read_person_feature
from avapipe.outputs import OutputLockedError, lock_path, staging_path
from avapipe.schemas import BOX_COLUMNS, OBJECTS, PART_NAMES, PARTS

torch.set_num_threads(1)
VIDEOS, SECONDS, FPS, SIZE = 5, (1, 2, 3), 8, 64
CLIP = {"num_frames": 8, "stride": 1, "alpha": 4, "short_side": 64, "fps": FPS}
RUN = {"dtype": "float32", "batch_size": 2, "shard_rows": 4, "chunk_rows": 2}


def moving_square(video: int, frame: int) -> np.ndarray:
    """A coloured background with a white square sliding right: every clip differs."""
    img = np.zeros((SIZE, SIZE, 3), np.uint8)
    img[:] = (40 * video, 200 - 30 * video, 90)
    x = (3 * frame + 11 * video) % (SIZE - 16)
    img[20:36, x:x + 16] = 255
    return img


def box_rows(video_id, timestamp, boxes):
    return [dict(video_id=video_id, timestamp=timestamp, box_id=i, x1=b[0], y1=b[1], x2=b[2],
                 y2=b[3], score=0.9, source="gt", person_id=i) for i, b in enumerate(boxes)]


def part_row(video_id, timestamp, box_id, invalid=()):
    row = dict(video_id=video_id, timestamp=timestamp, box_id=box_id)
    for k, part in enumerate(PART_NAMES):
        y = 0.05 * k
        row.update({f"{part}_x1": 0.2, f"{part}_y1": y, f"{part}_x2": 0.5, f"{part}_y2": y + 0.3,
                    f"{part}_valid": part not in invalid})
    return row


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Five 4-second videos with keyframes at 1, 2, 3 s. Video v1 has no person at
    2 s, v4 has no box at all, v2's persons have no parts row, objects in v0 and v2."""
    folder = tmp_path_factory.mktemp("clips")
    keyframes, persons, objects, parts = [], [], [], []
    for v in range(VIDEOS):
        path = folder / f"v{v}.mp4"
        write_video(path, (moving_square(v, f) for f in range(4 * FPS)), fps=FPS)
        for t in SECONDS:
            keyframes.append(dict(video_id=f"v{v}", timestamp=t, split="train", video_path=str(path),
                                  time_sec=float(t), fps=float(FPS), width=SIZE, height=SIZE))
            if v == 4 or (v, t) == (1, 2):
                continue
            boxes = [(0.1, 0.2, 0.5, 0.9), (0.4 + 0.05 * t, 0.1, 0.9, 0.6)][: 1 + (t + v) % 2]
            persons += box_rows(f"v{v}", t, boxes)
            if v != 2:
                parts += [part_row(f"v{v}", t, i, invalid=("left_foot",) * i) for i in range(len(boxes))]
            if v in (0, 2):
                objects += box_rows(f"v{v}", t, [(0.0, 0.0, 0.3, 0.25)])
    torch.manual_seed(0)
    net = build_slowfast(width_divisor=4, num_classes=5)
    torch.save({"model_state": net.state_dict()}, folder / "backbone.pt")
    tables = {"keyframes": pd.DataFrame(keyframes), "persons": pd.DataFrame(persons),
              "objects": pd.DataFrame(objects).assign(label="box"), "parts": pd.DataFrame(parts)}
    for name, table in tables.items():
        table.to_parquet(folder / f"{name}.parquet")
    return {"folder": folder, "extractor": FeatureExtractor(net).eval(), **tables}


def run(inputs, store_path, persons=None, **overrides):
    return extract_features(
        keyframes=inputs["keyframes"], persons=inputs["persons"] if persons is None else persons,
        objects=inputs["objects"], parts=inputs["parts"], extractor=inputs["extractor"],
        clip=ClipSpec(**CLIP), store_path=store_path, num_workers=1, progress=False,
        **{**RUN, **overrides})


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "features.zarr"
    summary = run(inputs, path)
    return path, summary


def arrays_of(path):
    store = open_features(path)
    return {name: store.array(name)[:] for name in ("persons", "parts", "part_valid", "objects")}, store


def direct_features(inputs, video_id, timestamp, boxes, stage):
    """The recipe applied by hand to one keyframe: decode, backbone, RoIAlign."""
    kf = inputs["keyframes"].set_index(["video_id", "timestamp"]).loc[(video_id, timestamp)]
    frames = read_clip(kf.video_path, center_sec=kf.time_sec, num_frames=8, stride=1, short_side=64,
                       fps=None)
    with torch.inference_mode():
        maps = inputs["extractor"](*clips_to_pathways(torch.from_numpy(frames[None]), alpha=4))
        rois = boxes_to_rois(torch.tensor(boxes, dtype=torch.float32), torch.zeros(len(boxes)),
                             height=frames.shape[1], width=frames.shape[2])
        return pool_rois(getattr(maps, stage), rois).numpy()


def test_stored_vectors_equal_the_recipe_recomputed_directly(inputs, reference):
    arrays, store = arrays_of(reference[0])
    for video_id, t in (("v0", 1), ("v3", 3)):
        rows = store.persons[(store.persons.video_id == video_id) & (store.persons.timestamp == t)]
        expected = direct_features(inputs, video_id, t, rows[list(BOX_COLUMNS)].to_numpy(), "res5")
        assert np.allclose(arrays["persons"][rows.row], expected, rtol=1e-4, atol=1e-5)
        first = rows.iloc[0]
        assert np.allclose(read_person_feature(store, video_id, t, int(first.box_id)), expected[0],
                           rtol=1e-4, atol=1e-5)
    part = part_row("v0", 1, 1)
    person_row = int(store.persons.set_index(["video_id", "timestamp", "box_id"]).loc[("v0", 1, 1), "row"])
    expected = direct_features(inputs, "v0", 1, [[part[f"head_{c}"] for c in BOX_COLUMNS]], "res4")[0]
    assert np.allclose(arrays["parts"][person_row, 0], expected, rtol=1e-4, atol=1e-5)
    foot = PART_NAMES.index("left_foot")
    assert not arrays["part_valid"][person_row, foot] and not arrays["parts"][person_row, foot].any()
    obj = store.objects[(store.objects.video_id == "v2") & (store.objects.timestamp == 3)].iloc[0]
    expected = direct_features(inputs, "v2", 3, [[obj[c] for c in BOX_COLUMNS]], "res5")[0]
    assert np.allclose(arrays["objects"][obj.row], expected, rtol=1e-4, atol=1e-5)


def test_person_boxes_are_enlarged_for_pooling_only(inputs, reference, tmp_path):
    run(inputs, tmp_path / "enlarged.zarr", enlarge=(0.5, 0.25))
    arrays, store = arrays_of(tmp_path / "enlarged.zarr")
    plain, plain_store = arrays_of(reference[0])
    pd.testing.assert_frame_equal(store.persons, plain_store.persons)  # the boxes written stay
    rows = store.persons[(store.persons.video_id == "v0") & (store.persons.timestamp == 1)]
    np.testing.assert_allclose(rows[list(BOX_COLUMNS)].to_numpy()[0], [0.1, 0.2, 0.5, 0.9], atol=1e-7)
    # AlphAction's extend of (6.4, 12.8, 32, 57.6) px on the 64×64 clip: pads
    # 0.5 × 26.6 / 2 = 6.65 and 0.25 × 45.8 / 2 = 5.725, clipped to [0, 63]
    pooled_on = np.array([[0.0, 7.075, 38.65, 63.0]]) / SIZE
    expected = direct_features(inputs, "v0", 1, pooled_on, "res5")[0]
    first = rows[rows.box_id == 0].row.iloc[0]
    assert np.allclose(arrays["persons"][first], expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(arrays["persons"][first], plain["persons"][first], rtol=1e-2)
    assert np.array_equal(arrays["objects"], plain["objects"])  # objects are pooled as they are


def test_index_tables_and_empty_cases(inputs, reference):
    arrays, store = arrays_of(reference[0])
    assert reference[1].person_rows == len(inputs["persons"]) == len(store.persons)
    assert list(store.videos.video_id) == ["v0", "v1", "v2", "v3"]  # v4 has no box
    assert store.array("persons").shape[1] == inputs["extractor"].person_channels == 576
    assert store.array("parts").shape[1:] == (10, 288)
    v2 = store.persons[store.persons.video_id == "v2"].row
    assert not arrays["part_valid"][v2].any() and not arrays["parts"][v2].any()  # no parts rows
    assert not (store.persons.video_id.eq("v1") & store.persons.timestamp.eq(2)).any()
    assert np.abs(arrays["persons"][store.persons.row]).sum(axis=1).min() > 0


def test_same_inputs_give_identical_arrays_and_float16_is_the_rounded_float32(inputs, reference, tmp_path):
    again = run(inputs, tmp_path / "again.zarr")
    assert again.computed == reference[1].computed == 4
    expected, store = arrays_of(reference[0])
    got, store2 = arrays_of(tmp_path / "again.zarr")
    assert all(np.array_equal(expected[k], got[k]) for k in expected)
    pd.testing.assert_frame_equal(store.persons, store2.persons)
    run(inputs, tmp_path / "half.zarr", dtype="float16")
    half, _ = arrays_of(tmp_path / "half.zarr")
    assert half["persons"].dtype == np.float16
    assert np.array_equal(half["persons"], expected["persons"].astype(np.float16))


def test_a_complete_store_for_the_same_inputs_is_not_recomputed(inputs, reference):
    assert run(inputs, reference[0]).computed == 0


CHILD = """
import json, sys
from pathlib import Path
import pandas as pd, torch
torch.set_num_threads(1)
from avapipe.features.backbone import ClipSpec, FeatureExtractor, build_slowfast
from avapipe.features.backbone_checkpoint import load_backbone_checkpoint
from avapipe.features.extract import extract_features
folder, store, clip, run = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4])
net = build_slowfast(width_divisor=4, num_classes=5)
load_backbone_checkpoint(net, folder / "backbone.pt")
tables = {n: pd.read_parquet(folder / f"{n}.parquet") for n in ("keyframes", "persons", "objects", "parts")}
extract_features(**tables, extractor=FeatureExtractor(net), clip=ClipSpec(**clip), store_path=store,
                 num_workers=0, progress=False, **run)
"""


def test_kill_9_then_rerun_gives_the_uninterrupted_store(inputs, reference, tmp_path):
    store = tmp_path / "killed.zarr"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(inputs["folder"]), str(store),
                              json.dumps(CLIP), json.dumps(RUN)])
    deadline = time.monotonic() + 120
    while not list((staging_path(store) / "progress").glob("*.done")) and child.poll() is None:
        assert time.monotonic() < deadline, "extraction never committed a video"
        time.sleep(0.002)
    assert child.poll() is None, f"extraction ended (rc={child.returncode}) before it could be killed"
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    committed = len(list((staging_path(store) / "progress").glob("*.done")))
    assert 1 <= committed < 4
    with pytest.raises(IncompleteStoreError):
        open_features(store)
    resumed = run(inputs, store)
    assert resumed.computed == 4 - committed
    expected, ref = arrays_of(reference[0])
    got, again = arrays_of(store)
    assert all(np.array_equal(expected[k], got[k]) for k in expected)
    pd.testing.assert_frame_equal(ref.persons, again.persons)
    pd.testing.assert_frame_equal(ref.objects, again.objects)
    assert not list(store.rglob("*.partial")) and not (store / "progress").exists()


def test_a_second_writer_of_a_store_fails_at_once_naming_the_first(inputs, reference, tmp_path):
    """float32 in a child process, then float16 on the same store meanwhile."""
    store = tmp_path / "shared.zarr"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(inputs["folder"]), str(store),
                              json.dumps(CLIP), json.dumps(RUN)])
    deadline = time.monotonic() + 120
    while not (lock_path(store).exists() or (store / "zarr.json").exists()) and child.poll() is None:
        assert time.monotonic() < deadline, "extraction never started writing"
        time.sleep(0.002)
    assert child.poll() is None, "extraction ended before a second writer could start"
    try:
        with pytest.raises(OutputLockedError, match=f"{store} is being written by pid {child.pid}"):
            run(inputs, store, dtype="float16")
    finally:
        assert child.wait() == 0
    expected, _ = arrays_of(reference[0])
    got, _ = arrays_of(store)
    assert all(got[k].dtype == expected[k].dtype and np.array_equal(got[k], expected[k])
               for k in expected)


def test_only_persons_no_objects_no_parts_and_jittered_copies(inputs, tmp_path):
    persons = inputs["persons"][inputs["persons"].video_id == "v0"]
    persons = jittered_copies(persons, copies=1, max_shift=0.1, seed=0)
    summary = extract_features(
        keyframes=inputs["keyframes"], persons=persons, objects=OBJECTS.empty(), parts=PARTS.empty(),
        extractor=inputs["extractor"], clip=ClipSpec(**CLIP), store_path=tmp_path / "p.zarr",
        num_workers=0, progress=False, **RUN)
    arrays, store = arrays_of(tmp_path / "p.zarr")
    assert summary.object_rows == 0 and arrays["objects"].shape == (0, 576)
    assert not arrays["part_valid"].any()
    jittered = store.persons[store.persons["copy"] == 1].iloc[0]
    box = [[jittered[c] for c in BOX_COLUMNS]]
    expected = direct_features(inputs, "v0", int(jittered.timestamp), box, "res5")[0]
    assert np.allclose(arrays["persons"][jittered.row], expected, rtol=1e-4, atol=1e-5)
    original = read_person_feature(store, "v0", int(jittered.timestamp), int(jittered.box_id))
    assert not np.allclose(original, arrays["persons"][jittered.row])


def test_a_box_at_an_unknown_keyframe_is_named(inputs, tmp_path):
    persons = inputs["persons"].assign(timestamp=inputs["persons"].timestamp + 10)
    with pytest.raises(KeyError, match=r"\('v0', 11\)"):
        run(inputs, tmp_path / "x.zarr", persons=persons)


def test_no_boxes_at_all_gives_an_empty_complete_store(inputs, tmp_path):
    summary = extract_features(
        keyframes=inputs["keyframes"], persons=inputs["persons"].iloc[:0], objects=OBJECTS.empty(),
        parts=PARTS.empty(), extractor=inputs["extractor"], clip=ClipSpec(**CLIP),
        store_path=tmp_path / "e.zarr", num_workers=1, progress=False, **RUN)
    arrays, store = arrays_of(tmp_path / "e.zarr")
    assert (summary.videos, summary.keyframes) == (0, 0)
    assert arrays["persons"].shape == (0, 576) and arrays["parts"].shape == (0, 10, 288)
    assert len(store.persons) == 0 and len(store.videos) == 0


def test_a_video_whose_keyframes_lie_in_two_files(inputs, tmp_path):
    """A YouTube id split over two Kinetics clips: each keyframe's clip is read
    from the file that holds it (here seconds 1-2 from v0.mp4, 3 from v3.mp4)."""
    kf = inputs["keyframes"]
    keyframes = pd.concat([kf[(kf.video_id == "v0") & (kf.timestamp < 3)],
                           kf[(kf.video_id == "v3") & (kf.timestamp == 3)]]).assign(video_id="yt")
    boxes = [(0.1, 0.2, 0.5, 0.9)]
    persons = pd.DataFrame([r for t in (1, 2, 3) for r in box_rows("yt", t, boxes)])
    extract_features(
        keyframes=keyframes, persons=persons, objects=OBJECTS.empty(), parts=PARTS.empty(),
        extractor=inputs["extractor"], clip=ClipSpec(**CLIP), store_path=tmp_path / "s.zarr",
        num_workers=0, progress=False, **RUN)
    arrays, store = arrays_of(tmp_path / "s.zarr")
    split = {**inputs, "keyframes": keyframes}
    for t in (1, 2, 3):
        row = store.persons[store.persons.timestamp == t].row
        expected = direct_features(split, "yt", t, boxes, "res5")
        assert np.allclose(arrays["persons"][row], expected, rtol=1e-4, atol=1e-5)
    same_file = direct_features(inputs, "v0", 3, boxes, "res5")
    assert not np.allclose(arrays["persons"][store.persons[store.persons.timestamp == 3].row],
                           same_file, rtol=1e-4, atol=1e-5)


def scene_at(t: float) -> np.ndarray:
    """One scene as a function of time in seconds (96×64): a texture whose
    brightness swings with a 3-s period and a soft blob that sways 30 px to
    either side every 4 s, so that two spans of time give different clips."""
    yy, xx = np.mgrid[0:64, 0:96]
    texture = 0.5 + 0.25 * np.sin(xx / 5.0) + 0.25 * np.cos(yy / 7.0)
    gain = 0.6 + 0.35 * np.sin(2 * np.pi * t / 3.0)
    blob = np.exp(-((xx - 48 - 30 * np.sin(2 * np.pi * t / 4.0)) ** 2 + (yy - 32) ** 2) / 72.0)
    img = np.stack([200 * texture * gain + 150 * blob, 160 * (1 - texture) * gain + 40,
                    90 + 160 * blob], axis=-1)
    return np.clip(img, 0, 255).astype(np.uint8)


def test_25_and_30_fps_encodings_of_one_scene_give_agreeing_features(inputs, tmp_path):
    """Clips are sampled in time at 30 fps: the same scene encoded (H.264, crf
    18) at 25 and at 30 fps gives person features within 5 % (relative L2) of
    each other. What remains is the 25-fps frames lying up to 20 ms from the
    30-fps sample times (a 10-ms shift alone moves these features by a few %)
    and the two encodings' losses (about 2 %). Counting 25-fps frames as if
    they were 30-fps ones makes the clip span 1.28 s instead of 1.07 s and
    differs by more than that (about 8 % here)."""
    keyframes = []
    for fps in (25, 30):
        path = tmp_path / f"scene_{fps}.mp4"
        write_video(path, (scene_at(i / fps) for i in range(4 * fps)), fps=fps)
        keyframes.append(dict(video_id=f"fps{fps}", timestamp=902, split="val", video_path=str(path),
                              time_sec=2.0, fps=float(fps), width=96, height=64))
    keyframes = pd.DataFrame(keyframes)
    persons = pd.DataFrame(sum((box_rows(v, 902, [(0.1, 0.1, 0.9, 0.9)]) for v in keyframes.video_id), []))
    tables = dict(objects=OBJECTS.empty(), parts=PARTS.empty(), extractor=inputs["extractor"],
                  num_workers=0, progress=False, **RUN)
    clip = dict(num_frames=16, stride=2, alpha=4, short_side=64)

    def person_features(frames, path, fps):
        extract_features(keyframes=frames, persons=persons[persons.video_id.isin(frames.video_id)],
                         clip=ClipSpec(**clip, fps=fps), store_path=path, **tables)
        store = open_features(path)
        return {v: read_person_feature(store, v, 902, 0) for v in frames.video_id}

    in_time = person_features(keyframes, tmp_path / "time.zarr", 30)
    counted = person_features(keyframes[keyframes.video_id == "fps25"], tmp_path / "count.zarr", 25)

    def distance(a, b):
        return float(np.linalg.norm(a - b) / np.linalg.norm(b))

    assert distance(in_time["fps25"], in_time["fps30"]) < 0.05 < distance(counted["fps25"], in_time["fps30"])
