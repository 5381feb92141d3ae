import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch

from avapipe.data import ava
from avapipe.models.predict import (
    ClassifierCheckpointError, FrameMapMetric, load_classifier, predict, result_rows,
)
from test_train import LABEL_MAP, make_task, train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("predict")
    task = make_task(folder, train_videos=2, val_videos=2, seconds=6)
    result = train(task, folder / "run", fusion="cube", pose_part=True, epochs=1)
    return task, result


def test_predictions_are_valid_result_rows(trained, tmp_path):
    task, result = trained
    keyframes = task["val_keyframes"]
    rows = predict(checkpoint=result.checkpoint, store_path=task["store_path"],
                   memory_path=task["memory_path"], keyframes=keyframes)
    persons = task["val_gt"].drop_duplicates(["video_id", "timestamp", "person_id"])
    assert len(rows) == len(persons) * len(LABEL_MAP)
    assert rows["score"].between(0, 1).all()
    pose = rows[rows["action_id"].isin([1, 2])]
    sums = pose.groupby(["video_id", "timestamp", "x1"])["score"].sum()
    np.testing.assert_allclose(sums, 1.0, rtol=1e-5)  # one softmax over the pose classes
    path = tmp_path / "results.csv"
    ava.write_results_csv(path, rows=rows)
    back = ava.read_results_csv(path, label_ids=set(LABEL_MAP)).rows
    assert len(back) == len(rows)
    kept = predict(checkpoint=result.checkpoint, store_path=task["store_path"],
                   memory_path=task["memory_path"], keyframes=keyframes, min_score=0.5)
    assert len(kept) == (rows["score"] >= 0.5).sum()


def test_checkpoint_predicts_the_same_in_a_fresh_process(trained, tmp_path):
    task, result = trained
    here = predict(checkpoint=result.checkpoint, store_path=task["store_path"],
                   memory_path=task["memory_path"], keyframes=task["val_keyframes"])
    task["val_keyframes"].to_parquet(tmp_path / "keyframes.parquet")
    script = textwrap.dedent(f"""
        import pandas as pd
        from avapipe.models.predict import predict
        rows = predict(checkpoint={str(result.checkpoint)!r},
                       store_path={str(task['store_path'])!r},
                       memory_path={str(task['memory_path'])!r},
                       keyframes=pd.read_parquet({str(tmp_path / 'keyframes.parquet')!r}))
        rows.to_parquet({str(tmp_path / 'rows.parquet')!r})
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=120)
    there = pd.read_parquet(tmp_path / "rows.parquet")
    pd.testing.assert_frame_equal(there, here, check_dtype=False)


def test_result_rows_by_hand():
    records = [{"video_id": "v", "timestamp": 902, "boxes": np.array([[0.1, 0.2, 0.3, 0.4]]),
                "scores": np.array([[0.7, 0.2, 0.05]])},
               {"video_id": "v", "timestamp": 903, "boxes": np.zeros((0, 4)),
                "scores": np.zeros((0, 3))}]
    rows = result_rows(records, action_ids=[1, 5, 9], min_score=0.1)
    assert rows.to_dict("list") == {"video_id": ["v", "v"], "timestamp": [902, 902],
                                    "x1": [0.1, 0.1], "y1": [0.2, 0.2], "x2": [0.3, 0.3],
                                    "y2": [0.4, 0.4], "action_id": [1, 5], "score": [0.7, 0.2]}
    assert len(result_rows([], action_ids=[1, 5, 9])) == 0


def test_validation_metric_scores_every_validation_keyframe():
    # 902 has a GT box; 903 is a validation keyframe without GT boxes, so the
    # 0.9 detection there is a FP ranked first: AP 1/2. Were 903 not among the
    # validation keyframes, the official evaluator would ignore it: AP 1.
    gt = pd.DataFrame([("v", 902, 0.1, 0.2, 0.3, 0.4, 1, 0)], columns=list(ava.GT_COLUMNS))
    records = [{"video_id": "v", "timestamp": t, "boxes": np.array([[0.1, 0.2, 0.3, 0.4]]),
                "scores": np.array([[s]])} for t, s in ((902, 0.8), (903, 0.9))]
    keyframes = pd.DataFrame({"video_id": ["v", "v"], "timestamp": [902, 903]})
    metrics = [FrameMapMetric(groundtruth=gt, label_map={1: "a"}, excluded=None, action_ids=[1],
                              keyframes=frames).compute_metrics(records)
               for frames in (keyframes, keyframes.iloc[:1])]
    assert metrics == [{"mAP": 0.5}, {"mAP": 1.0}]


def test_a_foreign_checkpoint_is_refused(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    with pytest.raises(ClassifierCheckpointError, match="train_classifier"):
        load_classifier(path)


def test_a_checkpoint_of_an_earlier_head_layout_asks_for_retraining(trained, tmp_path):
    _, result = trained
    saved = torch.load(result.checkpoint, weights_only=False)
    # The head before the two fully connected layers: one linear classifier.
    saved["state_dict"] = {k: v for k, v in saved["state_dict"].items()
                           if ".fc1." not in k and ".fc2." not in k}
    path = tmp_path / "earlier.pth"
    torch.save(saved, path)
    with pytest.raises(ClassifierCheckpointError, match="earlier.pth.*train the classifier again"):
        load_classifier(path)


def test_predictions_hold_only_the_classes_asked_for(trained):
    task, result = trained
    args = dict(checkpoint=result.checkpoint, store_path=task["store_path"],
                memory_path=task["memory_path"], keyframes=task["val_keyframes"])
    every, scored = predict(**args), predict(**args, classes=[1, 2, 3])
    assert set(every["action_id"]) == {1, 2, 3, 4} and set(scored["action_id"]) == {1, 2, 3}
    pd.testing.assert_frame_equal(scored, every[every["action_id"] != 4].reset_index(drop=True))


def test_a_checkpoint_from_before_part_pooling_loads_as_mean_pooled(tmp_path):
    """Checkpoints written before `train.part_pooling` existed averaged the parts;
    their config has no such key and they still load and predict the same."""
    from avapipe.models.predict import MODEL_KEY

    task = make_task(tmp_path, train_videos=2, val_videos=1, seconds=5)
    result = train(task, tmp_path / "run", pose_part=True, part_pooling="mean", epochs=1)
    saved = torch.load(result.checkpoint, weights_only=False)
    assert saved[MODEL_KEY]["head"].pop("part_pooling") == "mean"
    old = tmp_path / "before_part_pooling.pth"
    torch.save(saved, old)
    assert load_classifier(old).head.pose_part.pooling == "mean"
    args = dict(store_path=task["store_path"], memory_path=task["memory_path"],
                keyframes=task["val_keyframes"])
    pd.testing.assert_frame_equal(predict(checkpoint=old, **args),
                                  predict(checkpoint=result.checkpoint, **args))
