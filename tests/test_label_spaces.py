from pathlib import Path

import pytest

from avapipe.data import ava
from avapipe.data.label_spaces import AVA_ACTION_IDS, known_action_ids, label_spaces

# The official 2019 evaluation label map lists these 60 of AVA's 80 ids.
SCORED = ava.read_label_map(
    Path(__file__).parent / "data" / "ava_action_list_v2.1_for_activitynet_2018.pbtxt.txt")
UNSCORED = [2, 16, 18, 19, 21, 23, 25, 31, 32, 33, 35, 39, 40, 42, 44, 50, 53, 55, 71, 75]


def test_ava_trains_on_the_80_ids_of_its_training_csv_and_scores_60():
    assert sorted(set(AVA_ACTION_IDS) - set(SCORED)) == UNSCORED  # the facts agree
    train_ids = [a for a in AVA_ACTION_IDS for _ in range(3)]  # every id, repeated
    spaces = label_spaces(train_action_ids=train_ids, train_label_map=None, evaluated=SCORED)
    assert list(spaces.trained) == list(range(1, 81))
    assert spaces.evaluated == SCORED
    assert spaces.trained[12] == "stand" and spaces.trained[16] == "action 16"
    assert spaces.describe(train_source="t", evaluated_source="e") == (
        "80 classes trained (t), 60 evaluated (e); 20 trained but not scored")


def test_trained_classes_are_those_of_the_training_csv_plus_every_scored_class():
    spaces = label_spaces(train_action_ids=[1, 2, 12, 80], train_label_map=None,
                          evaluated={12: "stand", 17: "carry/hold (an object)"})
    assert list(spaces.trained) == [1, 2, 12, 17, 80]  # 17: scored though never trained on


def test_a_given_training_label_map_replaces_avas_80():
    train_map = {1: "a", 2: "b", 90: "c"}
    known = known_action_ids(train_label_map=train_map, evaluated={2: "B", 5: "e"})
    assert known == {1, 2, 5, 90}
    spaces = label_spaces(train_action_ids=[1, 2, 3, 90], train_label_map=train_map,
                          evaluated={2: "B", 5: "e"})
    assert spaces.trained == {1: "a", 2: "B", 5: "e", 90: "c"}  # 3 is in neither space


def test_ids_outside_both_spaces_stay_bad_rows(tmp_path):
    path = tmp_path / "ava_train_v2.2.csv"
    path.write_text("vid,0902,0.1,0.1,0.5,0.5,16,0\nvid,0902,0.1,0.1,0.5,0.5,81,0\n")
    known = known_action_ids(train_label_map=None, evaluated=SCORED)
    with pytest.raises(ava.AvaFormatError, match="ava_train_v2.2.csv:2"):
        ava.read_groundtruth_csv(path, label_ids=known)
    kept = ava.read_groundtruth_csv(path, label_ids=known, on_bad_row="skip")
    assert kept.rows["action_id"].tolist() == [16] and kept.skipped == {"unknown_action": 1}
