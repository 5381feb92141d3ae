import math

import numpy as np
import pandas as pd
import pytest

from avapipe.evaluation.frame_map import evaluate_frame_map
from avapipe.evaluation.report import (ExperimentRun, KeyframeIndex, bootstrap_differences,
                                       config_summary, keyframe_outcomes, metric_columns,
                                       resample_weights, t_interval, weighted_map)

LABEL_MAP = {1: "a", 2: "b", 3: "c"}
T_975_2DF = 4.302652729911275  # Student's t quantile 0.975 with 2 degrees of freedom (tables)
T_975_1DF = 12.706204736174707


def test_t_interval_by_hand():
    mean, low, high = t_interval([0.30, 0.32, 0.34])
    half = T_975_2DF * 0.02 / math.sqrt(3)  # sample sd of the three values is 0.02
    assert mean == pytest.approx(0.32)
    assert (low, high) == pytest.approx((0.32 - half, 0.32 + half))
    low = 0.6 - T_975_1DF * math.sqrt(0.02) / math.sqrt(2)  # sd of 0.5, 0.7 is sqrt(0.02)
    assert t_interval([0.5, 0.7])[1] == pytest.approx(low)
    single = t_interval([0.4])
    assert single[0] == 0.4 and math.isnan(single[1]) and math.isnan(single[2])


def test_config_summary_groups_by_configuration():
    runs = pd.DataFrame({"fusion": ["none"] * 3 + ["cube"] * 2, "pose_part": [False] * 5,
                         "seed": [0, 1, 2, 0, 1], "mAP": [0.30, 0.32, 0.34, 0.5, 0.7]})
    table = config_summary(runs, config_columns=["fusion", "pose_part"])
    assert list(table["fusion"]) == ["none", "cube"] and list(table["seeds"]) == [3, 2]
    assert table["mAP_mean"].tolist() == pytest.approx([0.32, 0.6])
    assert table["mAP_high"].iloc[0] == pytest.approx(0.32 + T_975_2DF * 0.02 / math.sqrt(3))


def toy_groundtruth(rng, videos=3, seconds=6):
    rows = []
    for v in range(videos):
        for t in range(902, 902 + seconds):
            for person in range(int(rng.integers(0, 3))):  # some keyframes have no GT
                x = 0.3 * person + rng.uniform(0, 0.05)
                for action in rng.choice([1, 2, 3], size=int(rng.integers(1, 3)), replace=False):
                    rows.append((f"v{v}", t, x, 0.1, x + 0.25, 0.8, int(action), person))
    return pd.DataFrame(rows, columns=["video_id", "timestamp", "x1", "y1", "x2", "y2",
                                       "action_id", "person_id"])


def toy_detections(rng, gt, quality):
    """Every GT box (jittered) with a score per class that is higher for its
    labels by ``quality``, plus one false box per keyframe; continuous scores."""
    boxes = gt.drop_duplicates(["video_id", "timestamp", "person_id"])
    labelled = set(zip(gt["video_id"], gt["timestamp"], gt["person_id"], gt["action_id"]))
    rows = []
    for _, b in boxes.iterrows():
        shift = rng.uniform(-0.03, 0.03)
        for action in LABEL_MAP:
            bonus = quality * ((b.video_id, b.timestamp, b.person_id, action) in labelled)
            rows.append((b.video_id, b.timestamp, b.x1 + shift, b.y1, b.x2 + shift, b.y2, action,
                         rng.uniform(0, 1 - quality) + bonus))
    for video, second in gt[["video_id", "timestamp"]].drop_duplicates().itertuples(index=False):
        rows.append((video, second, 0.0, 0.0, 0.1, 0.1, 1, rng.uniform(0, 1)))
    rows.append(("v9", 902, 0.2, 0.2, 0.5, 0.5, 2, 0.9))  # a keyframe without GT
    return pd.DataFrame(rows, columns=["video_id", "timestamp", "x1", "y1", "x2", "y2",
                                       "action_id", "score"])


def duplicated(table, index, weights):
    """The rows of keyframe k of ``index`` repeated weights[k] times, each copy
    as its own keyframe (the explicit resample); other keyframes dropped."""
    keys = pd.MultiIndex.from_frame(table[["video_id", "timestamp"]].astype({"video_id": str}))
    position = pd.MultiIndex.from_frame(index.table).get_indexer(keys)
    copies = np.where(position >= 0, weights[position], 0)
    rows = np.repeat(np.arange(len(table)), copies)
    copy = np.arange(len(rows)) - np.repeat(np.cumsum(copies) - copies, copies)
    out = table.iloc[rows].reset_index(drop=True)
    out["video_id"] = out["video_id"].astype(str) + "#" + copy.astype(str)
    return out


@pytest.fixture(scope="module")
def toy():
    rng = np.random.default_rng(3)
    gt = toy_groundtruth(rng)
    excluded = pd.DataFrame({"video_id": ["v0"], "timestamp": [903]})
    return gt, excluded, rng


def test_weighted_map_agrees_with_evaluating_the_resampled_keyframes(toy):
    gt, excluded, rng = toy
    det = toy_detections(rng, gt, quality=0.3)
    index = KeyframeIndex(gt, [det], excluded)
    outcomes = keyframe_outcomes(groundtruth=gt, detections=det, label_map=LABEL_MAP,
                                 keyframes=index)
    ones = np.ones((1, len(index)), np.int64)
    official = evaluate_frame_map(groundtruth=gt, detections=det, label_map=LABEL_MAP,
                                  excluded=excluded).mAP
    assert weighted_map(outcomes, ones)[0] == pytest.approx(official, abs=1e-12)
    weights = resample_weights(keyframes=len(index), resamples=4, seed=1)
    fast = weighted_map(outcomes, weights)
    for b in range(4):
        slow = evaluate_frame_map(groundtruth=duplicated(gt, index, weights[b]),
                                  detections=duplicated(det, index, weights[b]),
                                  label_map=LABEL_MAP).mAP
        assert fast[b] == pytest.approx(slow, abs=1e-12)


def test_metric_columns_follow_the_groups():
    columns = metric_columns(np.array([1, 2, 3, 5]), {5: "x", 1: "pose", 2: "pose", 9: "x"})
    assert list(columns) == ["mAP", "mAP_x", "mAP_pose"]
    assert [c.tolist() for c in columns.values()] == [[0, 1, 2, 3], [3], [0, 1]]
    assert list(metric_columns(np.array([1]), None)) == ["mAP"]


def test_resample_weights_draw_k_of_k():
    weights = resample_weights(keyframes=7, resamples=50, seed=0)
    assert weights.shape == (50, 7) and (weights.sum(axis=1) == 7).all()
    np.testing.assert_array_equal(weights, resample_weights(keyframes=7, resamples=50, seed=0))


def test_paired_bootstrap_agrees_with_a_slow_reference(toy):
    gt, excluded, rng = toy
    runs = [ExperimentRun({"fusion": f, "pose_part": False}, seed,
                          toy_detections(rng, gt, quality=q))
            for f, q in (("none", 0.1), ("cube", 0.6)) for seed in (0, 1)]
    table = bootstrap_differences(runs=runs, groundtruth=gt, label_map=LABEL_MAP,
                                  excluded=excluded, resamples=20, seed=5)
    index = KeyframeIndex(gt, [r.predictions for r in runs], excluded)
    weights = resample_weights(keyframes=len(index), resamples=20, seed=5)

    def maps(run, w):
        return evaluate_frame_map(groundtruth=duplicated(gt, index, w),
                                  detections=duplicated(run.predictions, index, w),
                                  label_map=LABEL_MAP).mAP

    diffs = [np.mean([maps(runs[2 + s], w) - maps(runs[s], w) for s in (0, 1)]) for w in weights]
    full = np.mean([evaluate_frame_map(groundtruth=gt, detections=runs[2 + s].predictions,
                                       label_map=LABEL_MAP, excluded=excluded).mAP
                    - evaluate_frame_map(groundtruth=gt, detections=runs[s].predictions,
                                         label_map=LABEL_MAP, excluded=excluded).mAP
                    for s in (0, 1)])
    row = table.iloc[0]
    assert (row["fusion"], row["paired_seeds"]) == ("cube", 2)
    assert row["diff"] == pytest.approx(full, abs=1e-12)
    assert (row["diff_low"], row["diff_high"]) == pytest.approx(
        tuple(np.percentile(diffs, [2.5, 97.5])), abs=1e-12)
    assert row["diff_low"] > 0  # the better detections win on every resample here


def test_keyframes_are_the_included_keys_and_two_column_ones_are_resampled(toy):
    # Keyframes annotated with no boxes are scored (their detections are FPs);
    # the keyframe without GT (v9) is not: the official evaluator ignores it.
    gt, excluded, rng = toy
    grid = pd.DataFrame([(f"v{v}", t) for v in range(3) for t in range(902, 908)],
                        columns=["video_id", "timestamp"])
    boxed = pd.MultiIndex.from_frame(gt[["video_id", "timestamp"]])
    empty = grid[~pd.MultiIndex.from_frame(grid).isin(boxed)].reset_index(drop=True)
    assert len(empty) > 0
    det = pd.concat([toy_detections(rng, gt, quality=0.3),
                     empty.assign(x1=0.3, y1=0.3, x2=0.6, y2=0.6, action_id=2, score=0.7)],
                    ignore_index=True)
    index = KeyframeIndex(gt, [det], excluded, empty)
    assert len(index) == len(grid) - 1  # every keyframe of the grid, less the excluded one
    assert "v9" not in set(index.table["video_id"])
    outcomes = keyframe_outcomes(groundtruth=gt, detections=det, label_map=LABEL_MAP,
                                 keyframes=index)
    official = evaluate_frame_map(groundtruth=gt, detections=det, label_map=LABEL_MAP,
                                  excluded=excluded, empty_keyframes=empty).mAP
    without_empty = evaluate_frame_map(groundtruth=gt, detections=det, label_map=LABEL_MAP,
                                       excluded=excluded).mAP
    assert official < without_empty  # the FPs on the empty keyframes count
    assert weighted_map(outcomes, np.ones((1, len(index)), np.int64))[0] == pytest.approx(
        official, abs=1e-12)
    weights = resample_weights(keyframes=len(index), resamples=3, seed=2)
    fast = weighted_map(outcomes, weights)
    for b in range(3):
        slow = evaluate_frame_map(groundtruth=duplicated(gt, index, weights[b]),
                                  detections=duplicated(det, index, weights[b]),
                                  empty_keyframes=duplicated(empty, index, weights[b]),
                                  label_map=LABEL_MAP).mAP
        assert fast[b] == pytest.approx(slow, abs=1e-12)
