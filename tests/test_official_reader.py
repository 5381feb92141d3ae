"""The official reader's keyframe keys and heap, and the challenge result rows:
hand-computed cases, and rows that score as the full table does."""

import numpy as np
import pandas as pd
import pytest

from avapipe.data import ava
from avapipe.evaluation.frame_map import evaluate_frame_map
from avapipe.evaluation.official_reader import (
    KeyframeCodes, challenge_rows, included_keys, kept_positions, official_rows,
)
from avapipe.evaluation.reference import _read_like_official

A, C = "-5KQ66BBWC4", "0f39OWEqJ24"
BOX = (0.1, 0.2, 0.5, 0.9)


def results(*rows) -> pd.DataFrame:
    """rows: (video, timestamp, action, score[, box])."""
    return pd.DataFrame([(v, t, *(box[0] if box else BOX), a, s) for v, t, a, s, *box in rows],
                        columns=list(ava.RESULT_COLUMNS))


def test_keys_are_the_official_six_decimal_keys():
    # "%.6f" of 902.0000001 and 902.0000004 is 902.000000; of 902.9999996, 903.000000.
    seconds = [902, 902.0, 902.0000001, 902.0000004, 902.000001, 902.9999996, 903, 902]
    table = pd.DataFrame({"video_id": [A] * 7 + [C], "timestamp": seconds})
    code = KeyframeCodes([table]).of(table)
    assert code[0] == code[1] == code[2] == code[3]
    assert code[5] == code[6]
    assert len({code[0], code[4], code[5], code[7]}) == 4
    other = pd.DataFrame({"video_id": [A, "unknown"], "timestamp": [902.5, 902]})
    assert KeyframeCodes([table]).of(other).tolist() == [-1, -1]


def test_included_keys_are_the_groundtruth_keyframes_less_the_excluded():
    truth = results((A, 902, 7, 1.0), (A, 903, 1, 1.0)).drop(columns="score")
    empty = pd.DataFrame({"video_id": [C, A], "timestamp": [902, 904]})
    excluded = pd.DataFrame({"video_id": [A], "timestamp": [903.0000001]})
    found = results((A, 902, 1, 0.5), (A, 905, 1, 0.5))
    codes = KeyframeCodes([truth, found, empty, excluded])
    included = included_keys(codes, groundtruth=truth, empty_keyframes=empty, excluded=excluded)
    expect = pd.DataFrame({"video_id": [A, C, A], "timestamp": [902, 902, 904]})
    assert included.tolist() == sorted(codes.of(expect).tolist())


def test_the_heap_keeps_what_heapq_keeps_on_ties():
    # Capacity 2, rows (score, action) in file order (0.5, 1), (0.5, 3), (0.6, 2):
    # the heap holds (0.5, 1), (0.5, 3); 0.6 > 0.5 replaces its smallest tuple,
    # (0.5, 1). Kept: rows 1 and 2 (a stable top 2 by score would keep 0 and 2).
    first = results((A, 902, 1, 0.5), (A, 902, 3, 0.5), (A, 902, 2, 0.6))
    key = np.zeros(3, dtype=np.int64)
    assert sorted(kept_positions(first, key, None, None, 2)) == [1, 2]
    # (0.5, 1), (0.6, 2), (0.5, 3): the last ties the smallest score and is not
    # greater: dropped. Kept rows 0 and 1, handed on by descending score.
    second = results((A, 902, 1, 0.5), (A, 902, 2, 0.6), (A, 902, 3, 0.5))
    assert kept_positions(second, key, None, None, 2).tolist() == [1, 0]
    assert official_rows(second, key, np.array([1, 2, 3]), None, 2)["action_id"].tolist() == [2, 1]


def test_challenge_rows_drop_other_classes_before_the_cap_and_round_boxes():
    # Class 7 is not in the label map: the reader drops it before its heap, so
    # it must not take one of the two places.
    rows = results((A, 902, 7, 0.99), (A, 902, 1, 0.5, (0.12345, 0.2, 0.56789, 0.9)),
                   (A, 902, 2, 0.4), (A, 902, 3, 0.3), (C, 1798, 3, 0.1))
    out = challenge_rows(rows, label_ids={1, 2, 3}, top_k=2)
    assert list(zip(out["video_id"], out["action_id"])) == [(A, 1), (A, 2), (C, 3)]
    assert out[["x1", "x2"]].iloc[0].tolist() == [0.123, 0.568]
    every_class = challenge_rows(rows, label_ids=None, top_k=2)
    assert every_class["action_id"].tolist() == [7, 1, 3]
    assert len(challenge_rows(rows, label_ids={1, 2, 3}, top_k=0)) == 4
    assert challenge_rows(rows.iloc[:0], label_ids={1}, top_k=50).empty
    with pytest.raises(ValueError, match="top_k=-1"):
        challenge_rows(rows, label_ids=None, top_k=-1)


def test_top_50_rows_score_as_all_rows_and_read_back_unchanged(tmp_path):
    # 3 keyframes x 4 persons x 30 classes = 120 rows each, float32 scores.
    rng = np.random.default_rng(0)
    persons = [(v, t, rng.uniform(0, 0.5, 2)) for v, t in ((A, 902), (A, 903), (C, 902))
               for _ in range(4)]
    rows = results(*[(v, t, a, float(np.float32(rng.uniform())), (*xy, *(xy + 0.4)))
                     for v, t, xy in persons for a in range(1, 31)])
    truth = rows.drop_duplicates(["video_id", "timestamp", "x1"]).drop(columns="score")
    truth = truth.assign(action_id=rng.integers(1, 31, len(truth)))
    labels = {a: str(a) for a in range(1, 31)}
    top = challenge_rows(rows, label_ids=labels, top_k=50)
    assert top.groupby(["video_id", "timestamp"]).size().tolist() == [50, 50, 50]
    full = evaluate_frame_map(groundtruth=truth, detections=ava.results_as_written(rows),
                              label_map=labels)
    capped = evaluate_frame_map(groundtruth=truth, detections=top, label_map=labels)
    assert capped.per_class == full.per_class and capped.mAP == full.mAP
    ava.write_results_csv(tmp_path / "r.csv", rows=top)
    pd.testing.assert_frame_equal(ava.read_results_csv(tmp_path / "r.csv").rows, top)


@pytest.mark.parametrize("seed", range(4))
def test_kept_rows_and_their_order_agree_with_the_reference_reader(seed):
    # Keyframes with 1..80 rows, scores tied on some (multiples of 1/4) and
    # distinct on others, capacity 50: both the heap and the plain sort paths.
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(30):
        tied = k % 3 == 0
        for _ in range(rng.integers(1, 81)):
            xy = np.round(rng.uniform(0, 0.5, 2), 2)
            score = rng.integers(4) / 4 if tied else rng.uniform()
            rows.append((A, 902 + k, int(rng.integers(1, 5)), score, (*xy, *(xy + 0.3))))
    table = results(*[rows[i] for i in rng.permutation(len(rows))])
    key = KeyframeCodes([table]).of(table)
    fast = official_rows(table, key, np.array([1, 2, 3]), None, 50)
    heaps = _read_like_official(table.to_dict("records"), {1, 2, 3}, capacity=50)
    slow = [(k, *entry) for k, entries in heaps.items() for entry in entries]
    keys = dict(zip(key, ("%s,%.6f" % (A, t) for t in table["timestamp"])))
    mine = [(keys[k], s, a, y1, x1, y2, x2) for k, s, a, y1, x1, y2, x2 in fast[
        ["key", "score", "action_id", "y1", "x1", "y2", "x2"]].itertuples(index=False)]
    assert mine == slow
