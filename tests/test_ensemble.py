"""Score ensemble of result tables: hand-computed weighted means."""

import pandas as pd
import pytest

from avapipe.data import ava
from avapipe.evaluation.ensemble import ensemble_results
from avapipe.evaluation.frame_map import evaluate_frame_map

A, B = ("-5KQ66BBWC4", 902), ("1j20qq1JyX4", 1798)
BOX = (0.1, 0.1, 0.5, 0.9)
NEAR = (0.12, 0.1, 0.5, 0.9)  # IoU with BOX 0.95
OTHER = (0.6, 0.1, 0.9, 0.9)


def table(*rows) -> pd.DataFrame:
    return pd.DataFrame([(*kf, *box, action, score) for kf, box, action, score in rows],
                        columns=list(ava.RESULT_COLUMNS))


def rows_of(frame: pd.DataFrame) -> list[tuple]:
    return [((r.video_id, r.timestamp), (r.x1, r.y1, r.x2, r.y2), r.action_id,
             pytest.approx(r.score, abs=1e-12)) for r in frame.itertuples()]


def test_identical_boxes_average_and_missing_rows_count_as_zero():
    first = table((A, BOX, 1, 0.8), (A, BOX, 2, 0.4))
    second = table((A, BOX, 1, 0.6))
    merged = ensemble_results([first, second], None, 0.5)
    # action 1: (0.8 + 0.6) / 2; action 2: (0.4 + 0) / 2
    assert rows_of(merged) == [(A, BOX, 1, 0.7), (A, BOX, 2, 0.2)]
    assert list(merged.columns) == list(ava.RESULT_COLUMNS)


def test_weights():
    merged = ensemble_results([table((A, BOX, 1, 0.8)), table((A, BOX, 1, 0.4))],
                              [3.0, 1.0], 0.5)
    assert rows_of(merged) == [(A, BOX, 1, (3 * 0.8 + 0.4) / 4)]


def test_overlapping_box_matches_and_keeps_the_first_tables_coordinates():
    merged = ensemble_results([table((A, BOX, 1, 0.8)), table((A, NEAR, 1, 0.6))], None, 0.5)
    assert rows_of(merged) == [(A, BOX, 1, 0.7)]


def test_box_below_threshold_or_on_another_keyframe_stays_apart():
    first = table((A, BOX, 1, 0.8))
    merged = ensemble_results([first, table((A, NEAR, 1, 0.6), (B, BOX, 1, 0.2))], None, 0.96)
    assert rows_of(merged) == [(A, BOX, 1, 0.4), (A, NEAR, 1, 0.3), (B, BOX, 1, 0.1)]


def test_matching_is_one_to_one_best_iou_first():
    # NEAR (IoU 0.95) takes BOX; WIDER (IoU 0.8) would also pass 0.5 but BOX is
    # taken, so it becomes a box of its own.
    wider = (0.1, 0.1, 0.6, 0.9)
    merged = ensemble_results([table((A, BOX, 1, 0.9)),
                               table((A, wider, 1, 0.5), (A, NEAR, 1, 0.3))], None, 0.5)
    assert rows_of(merged) == [(A, BOX, 1, 0.6), (A, wider, 1, 0.25)]


def test_three_tables_and_an_other_box():
    tables = [table((A, BOX, 1, 0.9), (A, OTHER, 3, 0.3)),
              table((A, OTHER, 3, 0.6)),
              table((A, NEAR, 1, 0.3), (A, OTHER, 1, 0.9))]
    merged = ensemble_results(tables, [1.0, 1.0, 2.0], 0.5)
    assert rows_of(merged) == [(A, BOX, 1, (0.9 + 2 * 0.3) / 4),
                               (A, OTHER, 1, 2 * 0.9 / 4), (A, OTHER, 3, (0.3 + 0.6) / 4)]


def test_ensemble_of_one_table_is_that_table_and_evaluates():
    only = table((A, BOX, 1, 0.8), (B, OTHER, 2, 0.5))
    merged = ensemble_results([only], None, 0.5)
    pd.testing.assert_frame_equal(merged, only)
    truth = pd.DataFrame([(*A, *BOX, 1, 0)], columns=list(ava.GT_COLUMNS))
    result = evaluate_frame_map(groundtruth=truth, detections=merged, label_map={1: "a"})
    assert result.mAP == 1.0


def test_timestamps_naming_one_official_key_are_one_keyframe():
    # 902.0000001 and 902 are one keyframe for the official evaluator ("%.6f");
    # 902.5 is its own one and stays fractional.
    first = table((A, BOX, 1, 0.8), ((A[0], 902.5), BOX, 1, 0.2))
    second = table(((A[0], 902.0000001), BOX, 1, 0.6))
    merged = ensemble_results([first, second], None, 0.5)
    assert rows_of(merged) == [(A, BOX, 1, 0.7), ((A[0], 902.5), BOX, 1, 0.1)]
    assert merged["timestamp"].dtype == "float64"
    whole = ensemble_results([table((A, BOX, 1, 0.8)), second], None, 0.5)
    assert whole["timestamp"].tolist() == [902] and whole["timestamp"].dtype == "int64"


@pytest.mark.parametrize("results, weights, problem", [
    ([], None, "at least one"),
    ([table((A, BOX, 1, 0.8))], [1.0, 2.0], "one weight"),
    ([table((A, BOX, 1, 0.8))], [-1.0], "one weight"),
    ([table((A, BOX, 1, 0.8), (A, BOX, 1, 0.7))], None, "more than once"),
    ([table((A, BOX, 1, 0.8)).drop(columns="score")], None, "lacks columns"),
])
def test_errors(results, weights, problem):
    with pytest.raises(ValueError, match=problem):
        ensemble_results(results, weights, 0.5)
