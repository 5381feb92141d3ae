import numpy as np
import pandas as pd
import pytest
import torch

from avapipe.evaluation.frame_map import evaluate_frame_map
from avapipe.features.memory import build_memory_index, save_memory_index
from avapipe.models import train as train_module
from avapipe.models.predict import load_classifier
from avapipe.models.train import TrainingError, train_classifier
from test_dataset import build_store, object_rows, person_rows

LABEL_MAP = {1: "stand", 2: "sit", 3: "hold", 4: "talk"}
GROUPS = {1: "pose", 2: "pose", 3: "person-object", 4: "person-person"}
CHANNELS = 16
BOXES = [(0.05, 0.2, 0.35, 0.9), (0.55, 0.2, 0.85, 0.9)]


def make_task(folder, *, train_videos=6, val_videos=3, seconds=10, seed=0):
    """Two persons per keyframe with random labels (one pose each, the other
    classes at 50 %); each person's feature is the sum of one fixed random
    pattern per label plus noise, so the labels are learnable from it."""
    rng = np.random.default_rng(seed)
    patterns = rng.normal(size=(len(LABEL_MAP), CHANNELS)).astype(np.float32)
    people, gt = [], []
    videos = [f"tr{v}" for v in range(train_videos)] + [f"va{v}" for v in range(val_videos)]
    for video in videos:
        for second in range(902, 902 + seconds):
            for box_id, box in enumerate(BOXES):
                labels = [int(rng.integers(1, 3))] + [a for a in (3, 4) if rng.random() < 0.5]
                people.append((video, second, box_id, *box))
                gt += [(video, second, *box, a, box_id) for a in labels]
    persons = person_rows(people)
    gt = pd.DataFrame(gt, columns=["video_id", "timestamp", "x1", "y1", "x2", "y2",
                                   "action_id", "person_id"])
    multi_hot = gt.pivot_table(index=["video_id", "timestamp", "person_id"], columns="action_id",
                               aggfunc="size", fill_value=0)

    def vectors(table):
        keys = pd.MultiIndex.from_arrays([table["video_id"].astype(str), table["timestamp"],
                                          table["box_id"]])
        hot = multi_hot.reindex(keys).to_numpy(np.float32)
        return hot @ patterns + 0.3 * rng.normal(size=(len(table), CHANNELS)).astype(np.float32)

    objects = object_rows([(v, 902, 0, 0.4, 0.4, 0.5, 0.5) for v in videos])
    store = build_store(folder / "features.zarr", persons=persons, objects=objects,
                        person_vectors=vectors,
                        object_vectors=lambda t: np.ones((len(t), CHANNELS)))
    keyframes = persons[["video_id", "timestamp"]].drop_duplicates()
    memory = build_memory_index(persons=store.persons, keyframes=keyframes, span=2, per_second=2)
    save_memory_index(memory, folder / "memory")
    is_val = keyframes["video_id"].str.startswith("va")
    gt_val = gt["video_id"].str.startswith("va")
    return dict(store_path=folder / "features.zarr", memory_path=folder / "memory",
                train_keyframes=keyframes[~is_val], val_keyframes=keyframes[is_val],
                train_gt=gt[~gt_val], val_gt=gt[gt_val], label_map=LABEL_MAP, groups=GROUPS,
                exclusions=None)


def train(task, work_dir, **overrides):
    settings = dict(fusion="none", pose_part=False, hidden=16, epochs=4, lr=1e-2, batch_size=8,
                    seed=0, device="cpu", work_dir=work_dir, dropout=0.2)
    return train_classifier(**task, **{**settings, **overrides})


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return make_task(tmp_path_factory.mktemp("task"))


def chance_map(task, seed=0):
    """frame-mAP of uniformly random scores for every cached person and class."""
    rng = np.random.default_rng(seed)
    gt = task["val_gt"]
    boxes = gt.drop_duplicates(["video_id", "timestamp", "person_id"])
    rows = pd.concat([boxes.assign(action_id=a) for a in LABEL_MAP], ignore_index=True)
    rows["score"] = rng.random(len(rows))
    return evaluate_frame_map(groundtruth=gt, detections=rows, label_map=LABEL_MAP).mAP


def test_training_learns_the_planted_labels(task, tmp_path):
    torch.set_num_threads(1)
    result = train(task, tmp_path / "run")
    chance = chance_map(task)
    assert list(result.curves["epoch"]) == [1, 2, 3, 4]
    assert result.curves["train_loss"].iloc[-1] < result.curves["train_loss"].iloc[0]
    assert result.best_mAP == pytest.approx(result.curves["val_mAP"].max())
    assert result.best_mAP > max(0.9, chance + 0.25), (result.best_mAP, chance)
    assert result.checkpoint.name.startswith("best_frame_mAP_epoch_")
    written = pd.read_csv(tmp_path / "run" / "training_curves.csv")
    pd.testing.assert_frame_equal(written, result.curves, check_dtype=False)
    assert (tmp_path / "run" / "training_curves.json").is_file()


class SimulatedCrash(Exception):
    pass


def crash_during_validation(monkeypatch, number):
    calls = []
    original = train_module.FrameMapMetric.compute_metrics

    def compute(self, results):
        calls.append(1)
        if len(calls) == number:
            raise SimulatedCrash
        return original(self, results)

    monkeypatch.setattr(train_module.FrameMapMetric, "compute_metrics", compute)


def crash_during_training(monkeypatch, epoch):
    original = train_module.TrainStateHook.after_train_iter

    def after_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.epoch == epoch:
            raise SimulatedCrash
        original(self, runner, batch_idx, data_batch, outputs)

    monkeypatch.setattr(train_module.TrainStateHook, "after_train_iter", after_iter)


def weights(checkpoint):
    return load_classifier(checkpoint).state_dict()


RESUMED_SETTINGS = dict(fusion="serial", epochs=3)  # dropout draws: the random state matters


@pytest.fixture(scope="module")
def uninterrupted(task, tmp_path_factory):
    torch.set_num_threads(1)
    return train(task, tmp_path_factory.mktemp("whole"), **RESUMED_SETTINGS)


@pytest.mark.parametrize("crash", [crash_during_validation, crash_during_training])
def test_resumed_training_reproduces_the_uninterrupted_run(task, uninterrupted, tmp_path,
                                                           monkeypatch, crash):
    torch.set_num_threads(1)
    settings, whole = RESUMED_SETTINGS, uninterrupted
    with monkeypatch.context() as patch:
        crash(patch, 2)
        with pytest.raises(SimulatedCrash):
            train(task, tmp_path / "cut", **settings)
    resumed = train(task, tmp_path / "cut", **settings)
    pd.testing.assert_frame_equal(resumed.curves, whole.curves)
    assert resumed.best_mAP == whole.best_mAP
    assert resumed.checkpoint.name == whole.checkpoint.name
    for name, tensor in weights(whole.last_checkpoint).items():
        assert torch.equal(tensor, weights(resumed.last_checkpoint)[name]), name


def test_resume_refuses_a_checkpoint_of_other_settings(task, tmp_path):
    train(task, tmp_path / "run", epochs=1)
    with pytest.raises(TrainingError, match="resume=False"):
        train(task, tmp_path / "run", epochs=1, lr=3e-3)
    again = train(task, tmp_path / "run", epochs=1, lr=3e-3, resume=False)
    assert list(again.curves["epoch"]) == [1]


def test_bad_settings_are_named(task, tmp_path):
    with pytest.raises(TrainingError, match="optimizer 'adam'"):
        train(task, tmp_path, optimizer="adam")
    with pytest.raises(TrainingError, match="device 'tpu'"):
        train(task, tmp_path, device="tpu")
    no_gt = {**task, "val_gt": task["val_gt"].iloc[:0]}
    with pytest.raises(TrainingError, match="validation ground truth"):
        train(no_gt, tmp_path)


def test_trains_on_more_classes_than_it_scores(task, tmp_path):
    """The training space (here 1-4) may exceed the evaluated label map (1-3)."""
    scored = {a: LABEL_MAP[a] for a in (1, 2, 3)}
    result = train({**task, "label_map": scored}, tmp_path / "run", epochs=1,
                   action_ids=list(LABEL_MAP))
    assert load_classifier(result.checkpoint).config["action_ids"] == [1, 2, 3, 4]
    with pytest.raises(TrainingError, match=r"evaluated classes \[3\] are not among"):
        train(task, tmp_path / "bad", epochs=1, action_ids=[1, 2, 4])
