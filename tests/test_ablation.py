import math

import numpy as np
import pytest
from test_report import LABEL_MAP, T_975_2DF, duplicated, toy, toy_detections  # noqa: F401

from avapipe.evaluation.ablation import (AblationReport, ablation_report, cube_versus_best,
                                         format_report, full_report)
from avapipe.evaluation.frame_map import evaluate_frame_map, group_map
from avapipe.evaluation.report import ExperimentRun, KeyframeIndex, resample_weights, score_runs

GROUPS = {1: "pose", 2: "pose", 3: "object"}


def run(fusion, seed, detections, pose_part=False):
    return ExperimentRun({"fusion": fusion, "pose_part": pose_part}, seed, detections)


def group_ap(gt, det, excluded, group):
    result = evaluate_frame_map(groundtruth=gt, detections=det, label_map=LABEL_MAP,
                                excluded=excluded)
    return group_map(result=result, groups={group: [a for a, g in GROUPS.items()
                                                    if g == group]})[group]


def test_ablation_report_identical_runs_and_unpaired_seeds(toy):
    gt, excluded, rng = toy
    det = toy_detections(rng, gt, quality=0.3)
    runs = [run("none", 0, det), run("serial", 0, det), run("cube", 7, det, pose_part=True),
            ExperimentRun({"fusion": "dense", "pose_part": False}, 0, mAP=0.25)]
    table = ablation_report(runs=runs, groundtruth=gt, label_map=LABEL_MAP, excluded=excluded,
                            resamples=50).set_index("fusion")
    same = table.loc["serial"]
    assert (same["diff"], same["diff_low"], same["diff_high"]) == (0.0, 0.0, 0.0)
    assert table.loc["cube", "paired_seeds"] == 0 and math.isnan(table.loc["cube", "diff"])
    assert table.loc["dense", "mAP_mean"] == 0.25 and math.isnan(table.loc["dense", "diff"])
    official = evaluate_frame_map(groundtruth=gt, detections=det, label_map=LABEL_MAP,
                                  excluded=excluded).mAP
    assert table.loc["none", "mAP_mean"] == pytest.approx(official)


def test_group_rows_agree_with_metrics_and_a_slow_bootstrap(toy):
    gt, excluded, rng = toy
    dets = {(f, s): toy_detections(rng, gt, quality=q)
            for f, q in (("none", 0.1), ("cube", 0.5)) for s in (0, 1, 2)}
    runs = [run(f, s, d) for (f, s), d in dets.items()]
    report = full_report(runs=runs, groundtruth=gt, label_map=LABEL_MAP, excluded=excluded,
                         groups=GROUPS, resamples=20, seed=4)
    groups = report.groups.set_index(["fusion", "group"])
    assert sorted(report.groups["group"].unique()) == ["object", "pose"]
    # Mean and t-interval over the seeds of the group AP metrics.json would report.
    values = [group_ap(gt, dets[("cube", s)], excluded, "pose") for s in (0, 1, 2)]
    row = groups.loc[("cube", "pose")]
    half = T_975_2DF * np.std(values, ddof=1) / math.sqrt(3)
    assert row["seeds"] == 3 and row["AP_mean"] == pytest.approx(np.mean(values))
    assert (row["AP_low"], row["AP_high"]) == pytest.approx((np.mean(values) - half,
                                                             np.mean(values) + half))
    # The paired difference of the object group, resample by resample.
    index = KeyframeIndex(gt, [r.predictions for r in runs], excluded)
    weights = resample_weights(keyframes=len(index), resamples=20, seed=4)

    def ap(fusion, s, w):
        return group_ap(duplicated(gt, index, w), duplicated(dets[(fusion, s)], index, w),
                        None, "object")

    diffs = [np.mean([ap("cube", s, w) - ap("none", s, w) for s in (0, 1, 2)]) for w in weights]
    full = np.mean([group_ap(gt, dets[("cube", s)], excluded, "object")
                    - group_ap(gt, dets[("none", s)], excluded, "object") for s in (0, 1, 2)])
    row = groups.loc[("cube", "object")]
    assert row["diff"] == pytest.approx(full, abs=1e-12)
    assert (row["diff_low"], row["diff_high"]) == pytest.approx(
        tuple(np.percentile(diffs, [2.5, 97.5])), abs=1e-12)
    assert math.isnan(groups.loc[("none", "pose"), "diff"])  # the baseline itself
    assert report.verdicts == []  # no serial / dense / parallel runs


def verdicts_for(toy, qualities, seeds=(0, 1), cube_seeds=None, resamples=30):
    gt, excluded, rng = toy
    runs = [run(f, s, toy_detections(np.random.default_rng(10 * s + i), gt, quality=q))
            for i, (f, q) in enumerate(qualities.items())
            for s in (cube_seeds if f == "cube" and cube_seeds else seeds)]
    scores = score_runs(runs=runs, groundtruth=gt, label_map=LABEL_MAP, excluded=excluded,
                        resamples=resamples, seed=1)
    return cube_versus_best(scores, runs), runs


def test_cube_that_beats_the_best_rival_gets_a_yes(toy):
    table, _ = verdicts_for(toy, {"serial": 0.3, "dense": 0.15, "parallel": 0.05, "cube": 0.7})
    row = table.iloc[0]
    assert row["best"] == "serial" and row["paired_seeds"] == 2
    assert row["best_mAP"] > 0 and row["cube_mAP"] > row["best_mAP"] and row["diff_low"] > 0
    assert row["verdict"].startswith("Yes: Cube-Fusion (pose_part=False) beats the best of "
                                     "serial / dense / parallel (serial")
    assert f"difference {row['diff']:+.4f}" in row["verdict"]


def test_cube_worse_than_the_best_rival_gets_a_no(toy):
    table, _ = verdicts_for(toy, {"dense": 0.7, "cube": 0.05})
    assert table.iloc[0]["best"] == "dense" and table.iloc[0]["diff_high"] < 0
    assert table.iloc[0]["verdict"].startswith("No: Cube-Fusion (pose_part=False) is worse")


def test_cube_equal_to_the_best_rival_does_not_beat_it(toy):
    gt, excluded, rng = toy
    det = toy_detections(rng, gt, quality=0.3)
    runs = [run("parallel", 0, det), run("cube", 0, det), run("serial", 0,
                                                              toy_detections(rng, gt, 0.0))]
    scores = score_runs(runs=runs, groundtruth=gt, label_map=LABEL_MAP, excluded=excluded,
                        resamples=10)
    row = cube_versus_best(scores, runs).iloc[0]
    assert row["best"] == "parallel" and (row["diff_low"], row["diff_high"]) == (0.0, 0.0)
    assert "does not beat" in row["verdict"] and "includes 0" in row["verdict"]


def test_unpaired_seeds_cannot_say_and_settings_are_kept_apart(toy):
    gt, excluded, rng = toy
    runs = [run("serial", 0, toy_detections(rng, gt, 0.3)),
            run("cube", 5, toy_detections(rng, gt, 0.5)),
            run("cube", 0, toy_detections(rng, gt, 0.5), pose_part=True),
            run("none", 0, toy_detections(rng, gt, 0.3), pose_part=True)]
    scores = score_runs(runs=runs, groundtruth=gt, label_map=LABEL_MAP, excluded=excluded,
                        resamples=10)
    table = cube_versus_best(scores, runs)
    assert len(table) == 1  # pose_part=True has no serial / dense / parallel run
    assert table.iloc[0]["verdict"].startswith("Cannot say whether Cube-Fusion "
                                               "(pose_part=False)")


def test_format_report_has_every_part(toy):
    gt, excluded, rng = toy
    runs = [run(f, 0, toy_detections(rng, gt, q)) for f, q in
            (("none", 0.1), ("serial", 0.2), ("cube", 0.6))]
    report = full_report(runs=runs, groundtruth=gt, label_map=LABEL_MAP, excluded=excluded,
                         groups=GROUPS, resamples=10)
    assert isinstance(report, AblationReport) and len(report.groups) == 6
    text = format_report(report)
    for part in ("mAP per configuration", "AP per class group", "AP_mean", "diff_low",
                 "object", "Cube-Fusion against the best", report.verdicts[0]):
        assert part in text


def test_each_configuration_is_compared_with_the_baseline_of_its_own_head_options(toy):
    gt, excluded, rng = toy
    plain, better = toy_detections(rng, gt, 0.2), toy_detections(rng, gt, 0.6)
    runs = [ExperimentRun({"fusion": f, "pose_part": False, "padding": p}, 0, d)
            for f, p, d in (("none", "mask", plain), ("serial", "mask", plain),
                            ("none", "attend", better), ("serial", "attend", better))]
    table = ablation_report(runs=runs, groundtruth=gt, label_map=LABEL_MAP, excluded=excluded,
                            resamples=10).set_index(["fusion", "padding"])
    for padding in ("mask", "attend"):  # the same predictions as their own baseline
        assert table.loc[("serial", padding), "diff"] == 0.0
    options = ablation_report(runs=runs, groundtruth=gt, label_map=LABEL_MAP,
                              excluded=excluded, baseline={"padding": "mask"},
                              resamples=10).set_index(["fusion", "padding"])
    assert options.loc[("serial", "attend"), "diff"] > 0
    assert math.isnan(options.loc[("serial", "mask"), "diff"])  # it is its own baseline
