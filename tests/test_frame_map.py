"""Frame-mAP: hand-computed cases for each official rule, and agreement with
the slow reference transcription on random inputs."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from avapipe.data import ava
from avapipe.evaluation.frame_map import (
    AVA_ACTION_GROUPS,
    FrameMapResult,
    evaluate_files,
    evaluate_frame_map,
    group_map,
)
from avapipe.evaluation.reference import reference_frame_map

DATA = Path(__file__).parent / "data"
LABELS = {1: "stand", 2: "sit", 3: "walk"}
A, B = ("-5KQ66BBWC4", 902), ("1j20qq1JyX4", 1798)


def gt(*rows) -> pd.DataFrame:
    """rows: (keyframe, box xyxy, action[, person id])."""
    return pd.DataFrame(
        [(*kf, *box, action, *(person or [0])) for kf, box, action, *person in rows],
        columns=list(ava.GT_COLUMNS))


def det(*rows) -> pd.DataFrame:
    """rows: (keyframe, box xyxy, action, score)."""
    return pd.DataFrame([(*kf, *box, action, score) for kf, box, action, score in rows],
                        columns=list(ava.RESULT_COLUMNS))


def keyframes(*keys) -> pd.DataFrame:
    return pd.DataFrame(list(keys), columns=["video_id", "timestamp"])


def evaluate_texts(folder: Path, groundtruth: str, detections: str) -> FrameMapResult:
    """evaluate_files on CSV texts, with LABELS as the label map."""
    (folder / "gt.csv").write_text(groundtruth)
    (folder / "det.csv").write_text(detections)
    ava.write_label_map(folder / "labels.pbtxt", labels=LABELS)
    return evaluate_files(labelmap=folder / "labels.pbtxt", groundtruth=folder / "gt.csv",
                          detections=folder / "det.csv")


def evaluate(groundtruth, detections, excluded=None, max_detections_per_keyframe=50,
             empty_keyframes=None) -> FrameMapResult:
    """The fast evaluator, checked against the slow reference on every case."""
    result = evaluate_frame_map(groundtruth=groundtruth, detections=detections,
                                label_map=LABELS, excluded=excluded,
                                empty_keyframes=empty_keyframes,
                                max_detections_per_keyframe=max_detections_per_keyframe)
    slow_map, slow = reference_frame_map(
        groundtruth=groundtruth, detections=detections, label_ids=set(LABELS),
        excluded=excluded, empty_keyframes=empty_keyframes,
        max_detections_per_keyframe=max_detections_per_keyframe)
    assert {c for c, ap in result.per_class.items() if ap is not None} == set(slow)
    for c, ap in slow.items():
        assert result.per_class[c] == pytest.approx(ap, abs=1e-9)
    assert result.mAP == pytest.approx(slow_map, abs=1e-9, nan_ok=True)
    return result


G1, G2, G3 = (0.1, 0.1, 0.4, 0.9), (0.5, 0.1, 0.9, 0.9), (0.2, 0.2, 0.6, 0.8)
FAR = (0.0, 0.0, 0.05, 0.05)


def test_hand_computed_ap():
    # Class 1, three GT boxes (G1, G2 on A; G3 on B). Detections by score:
    #   0.9 A on G1 -> TP;  0.8 A on G1 again -> FP (G1 taken);
    #   0.7 B on G3 -> TP;  0.6 B far away -> FP;  G2 is never found.
    # precision 1, 1/2, 2/3, 1/2; recall 1/3, 1/3, 2/3, 2/3.
    # Monotone precision at the recall steps: 1 at 1/3, 2/3 at 2/3, 0 at 1.
    # AP = 1/3 * 1 + 1/3 * 2/3 = 5/9.
    result = evaluate(
        gt((A, G1, 1), (A, G2, 1), (B, G3, 1)),
        det((A, G1, 1, 0.9), (A, G1, 1, 0.8), (B, G3, 1, 0.7), (B, FAR, 1, 0.6)))
    assert result.per_class == {1: pytest.approx(5 / 9, abs=1e-12), 2: None, 3: None}
    assert result.mAP == pytest.approx(5 / 9, abs=1e-12)
    np.testing.assert_allclose(result.precision[1], [1, 1 / 2, 2 / 3, 1 / 2])
    np.testing.assert_allclose(result.recall[1], [1 / 3, 1 / 3, 2 / 3, 2 / 3])
    assert result.num_groundtruth == {1: 3, 2: 0, 3: 0}


def test_class_with_gt_and_no_detections_scores_zero():
    result = evaluate(gt((A, G1, 1), (A, G1, 2)), det((A, G1, 1, 0.9)))
    assert result.per_class == {1: 1.0, 2: 0.0, 3: None}
    assert result.mAP == 0.5
    assert result.num_classes_with_gt == 2
    assert len(result.precision[2]) == 0


def test_empty_detections_give_zero_not_a_crash():
    result = evaluate(gt((A, G1, 1), (B, G3, 3)), det())
    assert result.mAP == 0.0 and result.per_class == {1: 0.0, 2: None, 3: 0.0}


def test_no_groundtruth_gives_nan_and_json_null():
    result = evaluate(gt(), det((A, G1, 1, 0.9)))
    assert math.isnan(result.mAP)
    assert result.to_json_dict() == {"mAP": None, "per_class": {"1": None, "2": None,
                                     "3": None}, "num_classes_with_gt": 0}


def test_official_reader_keeps_50_detections_per_keyframe():
    # 50 false positives of class 2 outscore the one true positive of class 1.
    noise = [(A, FAR, 2, 0.9)] * 50
    result = evaluate(gt((A, G1, 1), (B, G3, 2)), det(*noise, (A, G1, 1, 0.1)))
    assert result.per_class[1] == 0.0
    uncapped = evaluate(gt((A, G1, 1), (B, G3, 2)), det(*noise, (A, G1, 1, 0.1)),
                        max_detections_per_keyframe=51)
    assert uncapped.per_class[1] == 1.0


def test_cap_replaces_only_on_a_strictly_higher_score():
    noise = [(A, FAR, 2, 0.5)] * 50
    tied = evaluate(gt((A, G1, 1)), det(*noise, (A, G1, 1, 0.5)))
    higher = evaluate(gt((A, G1, 1)), det(*noise, (A, G1, 1, 0.51)))
    assert (tied.per_class[1], higher.per_class[1]) == (0.0, 1.0)


def test_detections_on_keyframes_not_in_the_groundtruth_are_ignored():
    # The official run_evaluation skips keyframes that are not included keys:
    # the 0.9 detection on B changes nothing, the TP on A alone gives AP 1.
    # (Counted as a FP first, it would give precision 1/2 at recall 1: AP 1/2.)
    result = evaluate(gt((A, G1, 1)), det((B, G1, 1, 0.9), (A, G1, 1, 0.8)))
    assert result.per_class[1] == 1.0


def test_detections_on_a_two_column_keyframe_are_false_positives():
    # B is annotated with no boxes: its detection is a FP ranked first, then the
    # TP on A: precision 1/2 at recall 1: AP 1/2.
    result = evaluate(gt((A, G1, 1)), det((B, G1, 1, 0.9), (A, G1, 1, 0.8)),
                      empty_keyframes=keyframes(B))
    assert result.per_class[1] == 0.5


def test_a_keyframe_with_only_unscored_classes_is_still_scored():
    # B's only GT row has class 7, not in the label map: the row is dropped but
    # B stays an included key (read_csv adds the key before filtering classes),
    # so the class-1 detection there is a FP, while the 0.95 one on C (no GT)
    # is ignored: FP, TP: AP 1/2 (1 if B were ignored, 1/3 if C counted).
    C = ("_-Z6wFjXtGQ", 902)
    result = evaluate(gt((A, G1, 1), (B, G3, 7)),
                      det((C, G3, 1, 0.95), (B, G3, 1, 0.9), (A, G1, 1, 0.8)))
    assert result.per_class[1] == 0.5


def test_files_with_two_column_rows_and_foreign_keyframes(tmp_path):
    # GT: A with a box, B (1j20qq1JyX4,1798) annotated with no boxes.
    # Detections by score: 0.95 on C = _-Z6wFjXtGQ,0902 (not in the GT): ignored;
    # 0.9 on B: FP; 0.8 on A: TP. Precision 1/2 at recall 1: AP 1/2.
    # (With C's detection counted as a FP: precision 1/3 at recall 1: AP 1/3.)
    result = evaluate_texts(
        tmp_path,
        "-5KQ66BBWC4,0902,0.100,0.100,0.400,0.900,1,0\n1j20qq1JyX4,1798\n",
        "_-Z6wFjXtGQ,0902,0.1,0.1,0.4,0.9,1,0.95\n"
        "1j20qq1JyX4,1798,0.1,0.1,0.4,0.9,1,0.9\n-5KQ66BBWC4,0902,0.1,0.1,0.4,0.9,1,0.8\n"
        "1j20qq1JyX4,1799\n")
    assert result.per_class[1] == 0.5


def test_timestamps_are_compared_as_official_keys(tmp_path):
    # Keys are "%s,%.6f" % (video, Decimal(timestamp)): 902.0000001 and 0902 are
    # one keyframe, as are 0902.9999996 and 903; 902.000001 is another one.
    # GT: G1 at 0902, G3 at 903, class 1. Detections: G1 at 902.0000001 (0.9, TP),
    # G3 at 0902.9999996 (0.8, TP), FAR at 902.000001 (0.95, foreign: ignored).
    result = evaluate_texts(
        tmp_path,
        "-5KQ66BBWC4,0902,0.100,0.100,0.400,0.900,1\n"
        "-5KQ66BBWC4,903,0.200,0.200,0.600,0.800,1\n",
        "-5KQ66BBWC4,902.0000001,0.1,0.1,0.4,0.9,1,0.9\n"
        "-5KQ66BBWC4,0902.9999996,0.2,0.2,0.6,0.8,1,0.8\n"
        "-5KQ66BBWC4,902.000001,0.0,0.0,0.05,0.05,1,0.95\n")
    assert result.per_class[1] == 1.0 and result.num_groundtruth[1] == 2


def test_fractional_timestamps_are_keyframes_of_their_own(tmp_path):
    # GT: G1 at 902.5, G3 at 902. Detections by score: G3's box at 0902.50
    # (0.9): no G3 there, FP; G1 at 902.5000001 (0.8): TP; G3 at 902.0 (0.7): TP.
    # Precision 0, 1/2, 2/3 at recall 0, 1/2, 1: AP 2/3. (Were 902.5 the same
    # keyframe as 902, the first two would be TPs and the last a FP: AP 1.)
    result = evaluate_texts(
        tmp_path,
        "-5KQ66BBWC4,902.5,0.100,0.100,0.400,0.900,1\n"
        "-5KQ66BBWC4,0902,0.200,0.200,0.600,0.800,1\n",
        "-5KQ66BBWC4,0902.50,0.2,0.2,0.6,0.8,1,0.9\n"
        "-5KQ66BBWC4,902.5000001,0.1,0.1,0.4,0.9,1,0.8\n"
        "-5KQ66BBWC4,902.0,0.2,0.2,0.6,0.8,1,0.7\n")
    assert result.per_class[1] == pytest.approx(2 / 3, abs=1e-12)


def test_exclusions_equal_a_groundtruth_without_those_keyframes():
    groundtruth = gt((A, G1, 1), (B, G3, 1))
    detections = det((B, FAR, 1, 0.9), (A, G1, 1, 0.8))
    # Without exclusion: FP then TP with 2 GT: precision 1/2 at recall 1/2: AP 1/4.
    assert evaluate(groundtruth, detections).per_class[1] == 0.25
    # B excluded: as if the GT had no B, whose detection is then ignored: AP 1.
    excluded = keyframes(B)
    result = evaluate(groundtruth, detections, excluded=excluded)
    without_b = evaluate(gt((A, G1, 1)), detections)
    assert result.per_class[1] == without_b.per_class[1] == 1.0
    assert result.num_groundtruth[1] == 1
    # a keyframe both excluded and listed as annotated with no boxes is excluded
    assert evaluate(gt((A, G1, 1)), detections, excluded=excluded,
                    empty_keyframes=excluded).per_class[1] == 1.0


def test_exclusions_file_equals_the_official_result_without_those_keyframes(tmp_path):
    # The real-format sample excludes 0f39OWEqJ24,0903 and _-Z6wFjXtGQ,0902. A
    # detection on 0903 (0.99, class 12) is then ignored, as the official
    # evaluator ignores it on a GT file without those keyframes; class 12's
    # one GT box is found: AP 1 (as a FP first it would be 1/2).
    sample = (DATA / "ava_sample.csv").read_text()
    kept = "".join(line for line in sample.splitlines(keepends=True)
                   if not line.startswith(("0f39OWEqJ24,0903", "_-Z6wFjXtGQ,0902")))
    (tmp_path / "gt_without.csv").write_text(kept)
    rows = ava.read_groundtruth_csv(tmp_path / "gt_without.csv").rows
    found = rows.drop(columns="person_id").assign(score=0.5)
    stray = pd.DataFrame([("0f39OWEqJ24", 903, 0.0, 0.0, 0.2, 0.2, 12, 0.99)],
                         columns=list(ava.RESULT_COLUMNS))
    ava.write_results_csv(tmp_path / "det.csv", rows=pd.concat([stray, found]))
    files = {"labelmap": DATA / "action_list.txt", "detections": tmp_path / "det.csv"}
    excluded = evaluate_files(groundtruth=DATA / "ava_sample.csv", **files,
                              exclusions=DATA / "ava_excluded_timestamps_sample.csv")
    without = evaluate_files(groundtruth=tmp_path / "gt_without.csv", **files)
    assert excluded.per_class == without.per_class
    assert excluded.per_class[12] == 1.0


def test_only_label_map_classes_count():
    result = evaluate(gt((A, G1, 1), (A, G1, 7)),
                      det((A, FAR, 7, 0.99), (A, G1, 7, 0.95), (A, G1, 1, 0.5)))
    assert 7 not in result.per_class and result.per_class[1] == 1.0 and result.mAP == 1.0
    # class 7's 60 rows do not use up the cap of 50 either
    flood = det(*[(A, FAR, 7, 0.99)] * 60, (A, G1, 1, 0.5))
    assert evaluate(gt((A, G1, 1)), flood).per_class[1] == 1.0


def test_multi_label_box_is_one_instance_per_action():
    result = evaluate(gt((A, G1, 1), (A, G1, 2)), det((A, G1, 1, 0.9), (A, G1, 2, 0.3)))
    assert result.per_class == {1: 1.0, 2: 1.0, 3: None}
    assert result.num_groundtruth == {1: 1, 2: 1, 3: 0}


def test_iou_of_exactly_one_half_matches():
    whole = (0.0, 0.0, 1.0, 1.0)
    assert evaluate(gt((A, whole, 1)), det((A, (0.0, 0.0, 0.5, 1.0), 1, 0.9))).mAP == 1.0
    assert evaluate(gt((A, whole, 1)), det((A, (0.0, 0.0, 0.499, 1.0), 1, 0.9))).mAP == 0.0


def test_degenerate_detection_boxes_are_dropped_after_the_cap():
    # A zero-width box is removed by the evaluator: it is neither TP nor FP.
    line = (0.3, 0.1, 0.3, 0.9)
    assert evaluate(gt((A, G1, 1)), det((A, line, 1, 0.9), (A, G1, 1, 0.8))).mAP == 1.0


def test_detection_whose_best_box_is_taken_is_a_false_positive():
    # Official rule: the 0.8 detection's best GT box is the one the 0.9
    # detection took, so it is a FP though it overlaps the other GT box by 0.6.
    left, right = (0.0, 0.0, 0.5, 1.0), (0.25, 0.0, 0.75, 1.0)
    second = (0.05, 0.0, 0.55, 1.0)  # IoU 0.82 with left, 0.667 with right
    result = evaluate(gt((A, left, 1), (A, right, 1)),
                      det((A, left, 1, 0.9), (A, second, 1, 0.8)))
    # TP, FP with 2 GT: precision 1 at recall 1/2: AP 1/2.
    assert result.per_class[1] == 0.5


@pytest.mark.parametrize("left_person, expected", [(0, 1.0), (1, 0.5)])
def test_equal_iou_goes_to_the_gt_box_with_the_higher_person_id(left_person, expected):
    # The official reader takes a GT row's 8th column (person id) as its score
    # and lists a keyframe's GT boxes by descending score; the first of two
    # equally good boxes wins. The whole-frame detection overlaps both by 3/4.
    left, right = (0.0, 0.0, 0.75, 1.0), (0.25, 0.0, 1.0, 1.0)
    groundtruth = gt((A, left, 1, left_person), (A, right, 1, 1 - left_person))
    detections = det((A, (0.0, 0.0, 1.0, 1.0), 1, 0.9), (A, left, 1, 0.8))
    # If the first detection takes `right`, the second takes `left`: AP 1;
    # if it takes `left`, the second is a FP: precision 1 at recall 1/2: AP 1/2.
    assert evaluate(groundtruth, detections).per_class[1] == expected


def test_score_ties_follow_the_official_heap_and_argsort_order():
    # Three class-1 detections with one score, file order T3, T1, T2 where
    # T1 < T2 < T3 as (score, action, y1, x1, y2, x2) tuples; only T3 hits GT.
    # heapq pushes T3, T1, T2 -> list [T1, T3, T2]; the stable score sort keeps
    # that, so the class's score list is [T1 (FP), T3 (TP), T2 (FP)]. The
    # official np.argsort(scores)[::-1] then decides where the TP lands; with
    # one GT box, AP = 1 / (its rank).
    t1, t2, t3 = (0.5, 0.0, 0.7, 0.2), (0.5, 0.05, 0.7, 0.25), (0.5, 0.5, 0.9, 0.9)
    result = evaluate(gt((A, t3, 1)), det((A, t3, 1, 0.5), (A, t1, 1, 0.5), (A, t2, 1, 0.5)))
    order = list(np.argsort(np.full(3, 0.5))[::-1])
    assert result.per_class[1] == 1 / (order.index(1) + 1)


def test_evaluate_files_on_the_real_format_sample(tmp_path):
    # The sample GT scored by itself: exclusions leave keyframe 0f39OWEqJ24,0902
    # with classes 12, 17, 79, all found; 80 only occurs on an excluded keyframe.
    rows = ava.read_groundtruth_csv(DATA / "ava_sample.csv").rows
    ava.write_results_csv(tmp_path / "det.csv", rows=rows.drop(columns="person_id")
                          .assign(score=np.linspace(0.9, 0.2, len(rows))))
    result = evaluate_files(labelmap=DATA / "action_list.txt",
                            groundtruth=DATA / "ava_sample.csv", detections=tmp_path / "det.csv",
                            exclusions=DATA / "ava_excluded_timestamps_sample.csv")
    assert result.per_class == {12: 1.0, 17: 1.0, 79: 1.0, 80: None}
    assert result.to_json_dict() == {"mAP": 1.0, "num_classes_with_gt": 3, "per_class": {
        "12": 1.0, "17": 1.0, "79": 1.0, "80": None}}


def test_group_map_averages_classes_with_gt():
    result = FrameMapResult(mAP=0.5, per_class={1: 1.0, 2: 0.0, 3: None},
                            precision={}, recall={}, num_groundtruth={})
    groups = {"some": [1, 2], "none": [3], "mixed": [1, 3]}
    assert group_map(result=result, groups=groups) == {"some": 0.5, "none": None, "mixed": 1.0}
    every_id = sorted(c for ids in AVA_ACTION_GROUPS.values() for c in ids)
    assert every_id == list(range(1, 81))


def test_label_map_ids_must_start_at_one():
    with pytest.raises(ValueError, match=">= 1"):
        evaluate_frame_map(groundtruth=gt(), detections=det(), label_map={0: "none"})


def random_case(seed: int, rows_per_box: int):
    """GT with multi-label boxes and person ids, some keyframes annotated with
    no boxes, some at half seconds; detections with tied scores (multiples of
    1/8), jittered boxes, timestamps spelled off by < 0.5 µs, keyframes without
    GT, a class outside the label map; one keyframe excluded."""
    rng = np.random.default_rng(seed)
    videos = ["-5KQ66BBWC4", "1j20qq1JyX4", "_-Z6wFjXtGQ"]
    truth, found, empty = [], [], []

    def spelled(kf):  # the same official key: "%.6f" rounds the noise away
        return kf[0], kf[1] + rng.choice([0.0, 1e-7, -2e-7, 4e-7])

    for _ in range(12):
        kf = (videos[rng.integers(3)], int(rng.integers(902, 908)) + rng.choice([0, 0, 0, 0.5]))
        persons = rng.integers(0, 4)
        if persons == 0:
            empty.append(kf)
        for person in range(persons):
            box = np.round(np.sort(rng.uniform(0, 1, (2, 2)), axis=0).T.ravel()[[0, 2, 1, 3]], 2)
            for action in rng.choice([1, 2, 3, 4], rng.integers(1, 3), replace=False):
                truth.append((kf, tuple(box), int(action), int(rng.integers(0, 3))))
            for _ in range(rows_per_box):
                moved = np.clip(box + rng.integers(-2, 3, 4) / 20, 0, 1)
                found.append((spelled(kf), tuple(moved), int(rng.integers(1, 5)),
                              rng.integers(8) / 8))
        found.append((spelled(kf), (0.3, 0.3, 0.7, 0.7), int(rng.integers(1, 5)),
                      rng.integers(8) / 8))
        found.append(((kf[0], 1500), (0.1, 0.1, 0.6, 0.6), 1, rng.integers(8) / 8))
    order = rng.permutation(len(found))
    truth_frame, found_frame = gt(*truth), det(*[found[i] for i in order])
    excluded = truth_frame[["video_id", "timestamp"]].drop_duplicates().head(1)
    return truth_frame, found_frame, excluded, keyframes(*empty)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("rows_per_box, cap", [(6, 50), (12, 10), (40, 50)])
def test_agrees_with_the_slow_reference(seed, rows_per_box, cap):
    truth, found, excluded, empty = random_case(seed, rows_per_box)
    result = evaluate(truth, found, excluded=excluded, max_detections_per_keyframe=cap,
                      empty_keyframes=empty)
    assert result.num_classes_with_gt > 0


def test_bad_tables_are_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"detections table lacks columns \['score'\]"):
        evaluate_frame_map(groundtruth=gt(), detections=gt(), label_map=LABELS)
    with pytest.raises(ValueError, match="NaN"):
        evaluate(gt((A, G1, 1)), det((A, G1, 1, float("nan"))))
