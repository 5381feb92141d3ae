"""AVA file readers and writers: round trips, real-format files, bad rows."""

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from avapipe.data import ava

DATA = Path(__file__).parent / "data"

# Real AVA video ids; a box with three actions, 7- and 8-column rows, and a
# keyframe with no boxes (two columns) last, where the writer puts it.
GROUNDTRUTH_TEXT = """\
-5KQ66BBWC4,0902,0.077,0.151,0.283,0.811,80,1
-5KQ66BBWC4,0902,0.077,0.151,0.283,0.811,9,1
-5KQ66BBWC4,0902,0.077,0.151,0.283,0.811,12,1
-5KQ66BBWC4,0902,0.332,0.194,0.481,0.891,17,0
-5KQ66BBWC4,0903,0.076,0.141,0.280,0.813,12,1
1j20qq1JyX4,1798,0.000,0.002,1.000,0.997,14
1j20qq1JyX4,1798,0.000,0.002,1.000,0.997,79
-5KQ66BBWC4,0904
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_groundtruth_round_trip_is_byte_identical(tmp_path):
    first = ava.read_groundtruth_csv(write(tmp_path, "gt.csv", GROUNDTRUTH_TEXT))
    ava.write_groundtruth_csv(tmp_path / "again.csv", rows=first.rows,
                              empty_keyframes=first.empty_keyframes)
    assert (tmp_path / "again.csv").read_text() == GROUNDTRUTH_TEXT
    second = ava.read_groundtruth_csv(tmp_path / "again.csv")
    pd.testing.assert_frame_equal(first.rows, second.rows)
    pd.testing.assert_frame_equal(first.empty_keyframes, second.empty_keyframes)


def test_groundtruth_values_and_dtypes(tmp_path):
    parsed = ava.read_groundtruth_csv(write(tmp_path, "gt.csv", GROUNDTRUTH_TEXT))
    rows = parsed.rows
    assert list(rows.columns) == list(ava.GT_COLUMNS)
    assert rows.dtypes.astype(str).tolist() == [
        "object", "int64", "float64", "float64", "float64", "float64", "int64", "int64"]
    assert rows["action_id"].tolist() == [80, 9, 12, 17, 12, 14, 79]
    assert rows["person_id"].tolist() == [1, 1, 1, 0, 1, -1, -1]  # -1: 7-column row
    assert rows.iloc[3][["x1", "y1", "x2", "y2"]].tolist() == [0.332, 0.194, 0.481, 0.891]
    assert parsed.empty_keyframes.values.tolist() == [["-5KQ66BBWC4", 904]]
    assert parsed.skipped == {}


def test_results_are_written_as_the_challenge_expects(tmp_path):
    # Boxes with 3 decimals; float32 scores as their shortest float32 text.
    scores = np.float32([0.1, 1e-05, 1 / 3, 0.0, 1.0, np.nextafter(np.float32(0.5), 1)])
    rows = pd.DataFrame({
        "video_id": ["_-Z6wFjXtGQ"] * 6, "timestamp": [902] * 6,
        "x1": [0.1 + 0.2, 0.0004, 0.0625, 0.0015, 1 / 3, 0.0], "y1": [0.0] * 6,
        "x2": [1.0] * 6, "y2": [1.0] * 6, "action_id": [1, 2, 3, 4, 5, 6],
        "score": scores.astype(np.float64),
    })
    empty = pd.DataFrame({"video_id": ["0f39OWEqJ24"], "timestamp": [1798]})
    ava.write_results_csv(tmp_path / "r.csv", rows=rows, empty_keyframes=empty)
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert lines[0] == "_-Z6wFjXtGQ,0902,0.300,0.000,1.000,1.000,1,0.1"
    assert [line.split(",")[2] for line in lines[:6]] == [
        "0.300", "0.000", "0.062", "0.002", "0.333", "0.000"]  # "%.3f": 0.0625 is exact
    assert [line.split(",")[-1] for line in lines[:6]] == [
        "0.1", "1e-05", "0.33333334", "0.0", "1.0", "0.50000006"]
    assert lines[-1] == "0f39OWEqJ24,1798"
    back = ava.read_results_csv(tmp_path / "r.csv")
    pd.testing.assert_frame_equal(back.rows, ava.results_as_written(rows))
    pd.testing.assert_frame_equal(back.empty_keyframes, empty.astype({"timestamp": np.int64}))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_written_scores_keep_their_order_and_ties(tmp_path, dtype):
    rng = np.random.default_rng(1)
    base = rng.uniform(0, 1, 300).astype(dtype)
    neighbours = np.nextafter(base[:100], dtype(1))  # the next representable value
    scores = np.concatenate([base, neighbours, base[:50]]).astype(np.float64)
    rows = pd.DataFrame({"video_id": "_-Z6wFjXtGQ", "timestamp": 902, "x1": 0.1, "y1": 0.1,
                         "x2": 0.5, "y2": 0.5, "action_id": 1, "score": scores})
    ava.write_results_csv(tmp_path / "r.csv", rows=rows)
    back = ava.read_results_csv(tmp_path / "r.csv").rows["score"].to_numpy()
    for a, b in ((scores, back), (back, scores)):
        np.testing.assert_array_equal(np.sign(a[:, None] - a[None, :]),
                                      np.sign(b[:, None] - b[None, :]))
    if dtype is np.float64:  # not float32 values: written in full
        np.testing.assert_array_equal(back, scores)


def test_one_file_never_mixes_float32_and_float64_score_text(tmp_path, monkeypatch):
    # a is a float32 value (0.3 as float32), b a float64 between 0.3 and a. Alone,
    # a would be written "0.3", which reads back below b: a file written in
    # chunks of one row must still write a in full.
    a = float(np.float32(0.3))
    b = (0.3 + a) / 2
    assert 0.3 < b < a
    monkeypatch.setattr(ava, "_ROWS_PER_CHUNK", 1)
    rows = pd.DataFrame({"video_id": "_-Z6wFjXtGQ", "timestamp": 902, "x1": 0.1, "y1": 0.1,
                         "x2": 0.5, "y2": 0.5, "action_id": [1, 2], "score": [a, b]})
    ava.write_results_csv(tmp_path / "r.csv", rows=rows)
    assert ava.read_results_csv(tmp_path / "r.csv").rows["score"].tolist() == [a, b]


def test_official_timestamp_spellings(tmp_path):
    text = ("_-Z6wFjXtGQ,0902,0.1,0.1,0.5,0.5,3,0.9\n_-Z6wFjXtGQ,902,0.1,0.1,0.5,0.5,3,0.9\n"
            "_-Z6wFjXtGQ,902.0,0.1,0.1,0.5,0.5,3,0.9\n"
            "_-Z6wFjXtGQ,902.0000001,0.1,0.1,0.5,0.5,3,0.9\n_-Z6wFjXtGQ,0902.9999996\n")
    path = write(tmp_path, "r.csv", text)
    with pytest.raises(ava.AvaFormatError, match="r.csv:4: .*whole number"):
        ava.read_results_csv(path)
    parsed = ava.read_results_csv(path, whole_seconds=False)
    assert parsed.rows["timestamp"].tolist() == [902] * 4
    assert parsed.rows["timestamp"].dtype == np.int64
    assert parsed.empty_keyframes["timestamp"].tolist() == [903]
    half = ava.read_groundtruth_csv(write(tmp_path, "g.csv", "_-Z6wFjXtGQ,902.5000004,"
                                          "0.1,0.1,0.5,0.5,3\n_-Z6wFjXtGQ,0903\n"),
                                    whole_seconds=False)
    assert half.rows["timestamp"].tolist() == [902.5]
    assert half.empty_keyframes["timestamp"].tolist() == [903.0]
    with pytest.raises(ava.AvaFormatError, match="g2.csv:1: .*not a number of seconds"):
        ava.read_groundtruth_csv(write(tmp_path, "g2.csv", "_-Z6wFjXtGQ,noon\n"),
                                 whole_seconds=False)


def test_keyframe_seconds_and_fractional_timestamps_written_back(tmp_path):
    seconds = ava.keyframe_seconds([902, 902.0000004, 902.9999996, 902.5000004, 902.000001])
    assert seconds.tolist() == [902.0, 902.0, 903.0, 902.5, 902.000001]
    rows = pd.DataFrame({"video_id": ["a1b2c3d4e5f"] * 3, "timestamp": [7.0, 902.5, 902.000001],
                         "x1": 0.1, "y1": 0.2, "x2": 0.3, "y2": 0.4, "action_id": 5, "score": 0.5})
    ava.write_results_csv(tmp_path / "r.csv", rows=rows)
    assert [line.split(",")[1] for line in (tmp_path / "r.csv").read_text().splitlines()] == [
        "0007", "902.5", "902.000001"]
    back = ava.read_results_csv(tmp_path / "r.csv", whole_seconds=False).rows
    assert back["timestamp"].tolist() == [7.0, 902.5, 902.000001]


def test_timestamps_are_zero_padded_and_int_parsed(tmp_path):
    rows = pd.DataFrame({"video_id": ["a1b2c3d4e5f"], "timestamp": [7], "x1": [0.1],
                         "y1": [0.2], "x2": [0.3], "y2": [0.4], "action_id": [5],
                         "person_id": [3]})
    ava.write_groundtruth_csv(tmp_path / "g.csv", rows=rows)
    assert (tmp_path / "g.csv").read_text() == "a1b2c3d4e5f,0007,0.100,0.200,0.300,0.400,5,3\n"
    assert ava.read_groundtruth_csv(tmp_path / "g.csv").rows["timestamp"].tolist() == [7]


def test_crlf_and_blank_lines_are_read(tmp_path):
    text = "vid_one_xyz,0902,0.1,0.1,0.5,0.5,3,0.9\r\n\r\nvid_one_xyz,0903\r\n"
    parsed = ava.read_results_csv(write(tmp_path, "r.csv", text))
    assert parsed.rows["score"].tolist() == [0.9]
    assert parsed.empty_keyframes["timestamp"].tolist() == [903]


def test_empty_file_gives_empty_tables(tmp_path):
    parsed = ava.read_results_csv(write(tmp_path, "r.csv", ""))
    assert len(parsed.rows) == 0 and len(parsed.empty_keyframes) == 0
    assert list(parsed.rows.columns) == list(ava.RESULT_COLUMNS)


def test_real_format_sample_files():
    labels = ava.read_label_map(DATA / "action_list.txt")
    assert labels == {12: "action1", 17: "action2", 79: "action3", 80: "action3"}
    gt = ava.read_groundtruth_csv(DATA / "ava_sample.csv")
    assert len(gt.rows) == 8
    assert gt.rows["video_id"].unique().tolist() == ["0f39OWEqJ24", "_-Z6wFjXtGQ"]
    assert gt.rows.iloc[5].tolist() == ["_-Z6wFjXtGQ", 902, 0.063, 0.049, 0.524, 0.996, 12, 0]
    excluded = ava.read_excluded_timestamps(DATA / "ava_excluded_timestamps_sample.csv")
    assert excluded.values.tolist() == [["0f39OWEqJ24", 903], ["_-Z6wFjXtGQ", 902]]
    official = ava.read_label_map(DATA / "ava_action_list_v2.1_for_activitynet_2018.pbtxt.txt")
    assert len(official) == 60 and official[1] == "bend/bow (at the waist)"
    assert 2 not in official  # "carry/hold" is one of the 20 classes not evaluated


def test_label_74_of_the_sample_is_unknown_to_its_label_map(tmp_path):
    labels = ava.read_label_map(DATA / "action_list.txt")
    with pytest.raises(ava.AvaFormatError, match=r"ava_sample.csv:7: .*74,0.*not in the label map"):
        ava.read_groundtruth_csv(DATA / "ava_sample.csv", label_ids=labels)
    skipped = ava.read_groundtruth_csv(DATA / "ava_sample.csv", label_ids=labels,
                                       on_bad_row="skip")
    assert skipped.skipped == {"unknown_action": 1}
    assert 74 not in skipped.rows["action_id"].tolist() and len(skipped.rows) == 7


BAD_ROWS = {
    "columns": "vid_one_xyz,0902,0.1,0.1,0.5",
    "timestamp": "vid_one_xyz,902.5,0.1,0.1,0.5,0.5,3,0.9",
    "box": "vid_one_xyz,0902,0.6,0.1,0.5,0.5,3,0.9",  # x2 < x1
    "action_id": "vid_one_xyz,0902,0.1,0.1,0.5,0.5,walk,0.9",
    "score": "vid_one_xyz,0902,0.1,0.1,0.5,0.5,3,high",
}
GOOD_ROW = "vid_one_xyz,0903,0.1,0.1,0.5,0.5,3,0.9"


@pytest.mark.parametrize("reason", sorted(BAD_ROWS))
def test_bad_row_raises_with_file_line_and_row(tmp_path, reason):
    path = write(tmp_path, "r.csv", f"{GOOD_ROW}\n{BAD_ROWS[reason]}\n{GOOD_ROW}\n")
    with pytest.raises(ava.AvaFormatError) as info:
        ava.read_results_csv(path)
    message = str(info.value)
    assert f"{path}:2:" in message and BAD_ROWS[reason] in message
    assert "on_bad_row='skip'" in message


def test_box_outside_the_frame_is_bad(tmp_path):
    path = write(tmp_path, "r.csv", "vid_one_xyz,0902,0.1,0.1,1.2,0.5,3,0.9\n")
    with pytest.raises(ava.AvaFormatError, match="r.csv:1: .*normalized"):
        ava.read_results_csv(path)


def test_skip_counts_bad_rows_per_reason_and_warns(tmp_path, caplog):
    text = "\n".join([GOOD_ROW, *BAD_ROWS.values(), BAD_ROWS["box"], GOOD_ROW]) + "\n"
    with caplog.at_level(logging.WARNING):
        parsed = ava.read_results_csv(write(tmp_path, "r.csv", text), on_bad_row="skip")
    assert parsed.skipped == {"columns": 1, "timestamp": 1, "box": 2, "action_id": 1,
                              "score": 1}
    assert len(parsed.rows) == 2 and parsed.rows["timestamp"].tolist() == [903, 903]
    assert "r.csv" in caplog.text and "'box': [4, 7]" in caplog.text


def test_groundtruth_person_id_must_be_an_integer(tmp_path):
    path = write(tmp_path, "g.csv", "vid_one_xyz,0902,0.1,0.1,0.5,0.5,3,1.5\n")
    with pytest.raises(ava.AvaFormatError, match="g.csv:1: .*person id"):
        ava.read_groundtruth_csv(path)


def test_writer_refuses_bad_rows(tmp_path):
    rows = pd.DataFrame({"video_id": ["vid_one_xyz"], "timestamp": [902], "x1": [0.5],
                         "y1": [0.1], "x2": [0.4], "y2": [0.5], "action_id": [3],
                         "score": [0.9]})
    with pytest.raises(ava.AvaFormatError, match="row 0"):
        ava.write_results_csv(tmp_path / "r.csv", rows=rows)


def test_label_map_writer_matches_the_official_layout(tmp_path):
    ava.write_label_map(tmp_path / "l.pbtxt", labels={17: "carry/hold (an object)", 1: "stand"})
    assert (tmp_path / "l.pbtxt").read_text() == (
        'item {\n  name: "stand"\n  id: 1\n}\n'
        'item {\n  name: "carry/hold (an object)"\n  id: 17\n}\n')
    assert ava.read_label_map(tmp_path / "l.pbtxt") == {1: "stand", 17: "carry/hold (an object)"}


def test_label_map_reader_is_lenient(tmp_path):
    text = ('label {\n  name: "bend/bow (at the waist)"\n  label_id: 1\n'
            '  label_type: PERSON_MOVEMENT\n}\n'
            'item { display_name: "crouch/kneel" id: 3 }\n'
            'item {\n    name: "dance"\n    display_name: "Dance"\n    id: 4\n}\n')
    labels = ava.read_label_map(write(tmp_path, "l.pbtxt", text))
    assert labels == {1: "bend/bow (at the waist)", 3: "crouch/kneel", 4: "dance"}


@pytest.mark.parametrize("text, problem", [
    ('item {\n  name: "a"\n}\n', "no integer `id:`"),
    ('item {\n  name: "a"\n  id: 2\n}\nitem {\n  name: "b"\n  id: 2\n}\n', "appears twice"),
    ("nothing here\n", "no `item"),
])
def test_label_map_errors(tmp_path, text, problem):
    with pytest.raises(ava.AvaFormatError, match=problem):
        ava.read_label_map(write(tmp_path, "l.pbtxt", text))


def test_excluded_timestamps_round_trip(tmp_path):
    keys = pd.DataFrame({"video_id": ["0f39OWEqJ24", "_-Z6wFjXtGQ"], "timestamp": [903, 902]})
    ava.write_excluded_timestamps(tmp_path / "e.csv", keyframes=keys)
    assert (tmp_path / "e.csv").read_text() == "0f39OWEqJ24,0903\n_-Z6wFjXtGQ,0902\n"
    pd.testing.assert_frame_equal(ava.read_excluded_timestamps(tmp_path / "e.csv"), keys)
    with pytest.raises(ava.AvaFormatError, match="e2.csv:1: "):
        ava.read_excluded_timestamps(write(tmp_path, "e2.csv", "0f39OWEqJ24,0903,1\n"))
