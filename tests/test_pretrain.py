import numpy as np
import pandas as pd
import pytest
import torch

from avapipe.data.video import write_video
from avapipe.features.backbone import ClipSpec, build_slowfast
from avapipe.features.backbone_checkpoint import load_backbone_checkpoint
from avapipe.features.pretrain import (
    center_square, clip_targets, collate_person_clips, person_targets, pretrain_backbone,
    save_backbone_checkpoint,
)

torch.set_num_threads(1)
CLIP = ClipSpec(num_frames=8, stride=1, alpha=4, short_side=32)


def test_targets_are_the_union_of_the_keyframes_person_actions():
    keyframes = pd.DataFrame({"video_id": ["a", "a", "b"], "timestamp": [1, 2, 1]})
    labels = pd.DataFrame({"video_id": ["a", "a", "a", "b", "c"], "timestamp": [1, 1, 1, 1, 1],
                           "action_id": [3, 7, 3, 80, 3], "person_id": [0, 0, 1, 0, 0]})
    targets = clip_targets(keyframes=keyframes, labels=labels, action_ids=[3, 7, 12])
    assert targets.tolist() == [[1, 1, 0], [0, 0, 0], [0, 0, 0]]  # action 80 and video c ignored


def test_person_targets_are_each_boxs_own_actions():
    keyframes = pd.DataFrame({"video_id": ["a", "a"], "timestamp": [1, 2]})
    box_a, box_b = [0.1, 0.2, 0.3, 0.9], [0.5, 0.1, 0.7, 0.8]
    rows = [(box_a, 3), (box_b, 7), (box_a, 7), (box_b, 80)]
    labels = pd.DataFrame([dict(video_id="a", timestamp=1, x1=b[0], y1=b[1], x2=b[2], y2=b[3], action_id=a)
                           for b, a in rows])
    (boxes, targets), (no_boxes, no_targets) = person_targets(keyframes=keyframes, labels=labels,
                                                              action_ids=[3, 7])
    np.testing.assert_allclose(boxes, [box_a, box_b])  # sorted, one row per box
    assert targets.tolist() == [[1, 1], [0, 1]]  # action 80 is not a target
    assert no_boxes.shape == (0, 4) and no_targets.shape == (0, 2)  # keyframe 2 has no GT


def test_collate_pads_frames_and_turns_boxes_into_each_clips_pixels():
    small, large = torch.ones((2, 4, 6, 3), dtype=torch.uint8), torch.full((2, 6, 8, 3), 2, dtype=torch.uint8)
    box = torch.tensor([[0.5, 0.25, 1.0, 1.0]])
    clips, rois, targets = collate_person_clips([(small, box, torch.ones(1, 3)),
                                                 (large, box.repeat(2, 1), torch.zeros(2, 3))])
    assert clips.shape == (2, 2, 6, 8, 3) and clips[0, :, 4:].sum() == 0 and clips[0, :, :, 6:].sum() == 0
    assert rois.tolist() == [[0, 3, 1, 6, 4], [1, 4, 1.5, 8, 6], [1, 4, 1.5, 8, 6]]
    assert targets.shape == (3, 3)


def test_center_square_crops_the_middle():
    frames = np.arange(2 * 4 * 6 * 3, dtype=np.uint8).reshape(2, 4, 6, 3)
    assert np.array_equal(center_square(frames, 4), frames[:, :, 1:5])


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Two videos: a bright square moving right (action 1) or left (action 2), 32×48."""
    folder = tmp_path_factory.mktemp("pretrain")
    keyframes, labels = [], []
    for v, direction in enumerate((1, -1)):
        path = folder / f"v{v}.mp4"
        frames = []
        for f in range(40):
            img = np.full((32, 48, 3), 60, np.uint8)
            x = 16 + direction * (f % 16)
            img[8:24, x:x + 8] = 250
            frames.append(img)
        write_video(path, frames, fps=8)
        for t in (1, 2, 3):
            keyframes.append(dict(video_id=f"v{v}", timestamp=t, split="train", video_path=str(path),
                                  time_sec=float(t), fps=8.0, width=48, height=32))
            labels.append(dict(video_id=f"v{v}", timestamp=t, action_id=1 + v, person_id=0))
    return pd.DataFrame(keyframes), pd.DataFrame(labels)


def train(clips, seed):
    keyframes, labels = clips
    return pretrain_backbone(keyframes=keyframes, labels=labels, clip=CLIP, width_divisor=8,
                             epochs=4, lr=3e-3, batch_size=3, seed=seed)


@pytest.fixture(scope="module")
def trained(clips):
    return train(clips, 0)


def test_pretraining_lowers_the_loss_and_is_deterministic(clips, trained):
    first, again, other = trained, train(clips, 0), train(clips, 1)
    assert first.action_ids == [1, 2]
    assert first.epoch_losses[-1] < first.epoch_losses[0]
    assert first.epoch_losses == again.epoch_losses
    assert all(torch.equal(first.state_dict[k], again.state_dict[k]) for k in first.state_dict)
    assert not torch.equal(first.state_dict["blocks.0.multipathway_blocks.0.conv.weight"],
                           other.state_dict["blocks.0.multipathway_blocks.0.conv.weight"])


def test_saved_pretraining_loads_like_a_users_checkpoint(trained, tmp_path):
    result = trained
    save_backbone_checkpoint(result, tmp_path / "backbone.pyth", config={"width_divisor": 8})
    model = build_slowfast(width_divisor=8, num_classes=len(result.action_ids))
    assert load_backbone_checkpoint(model, tmp_path / "backbone.pyth") == []
    assert all(torch.equal(v, result.state_dict[k]) for k, v in model.state_dict().items())


def test_person_level_pretraining_learns_the_boxes_and_leaves_the_clip_head_alone(clips):
    keyframes, labels = clips
    boxed = labels.assign(x1=0.1, y1=0.2, x2=0.9, y2=0.8)
    args = dict(keyframes=keyframes, labels=boxed, clip=CLIP, width_divisor=8, epochs=4, lr=3e-3,
                batch_size=3, seed=0, level="person")
    first, again = pretrain_backbone(**args), pretrain_backbone(**args)
    assert first.epoch_losses[-1] < first.epoch_losses[0] and first.epoch_losses == again.epoch_losses
    assert pretrain_backbone(**{**args, "epochs": 1, "action_ids": [2, 9]}).action_ids == [2]
    torch.manual_seed(0)
    untrained = build_slowfast(width_divisor=8, num_classes=2)
    head = [k for k in untrained.state_dict() if k.startswith("blocks.6.")]
    assert head and all(torch.equal(untrained.state_dict()[k], first.state_dict[k]) for k in head)
    with pytest.raises(ValueError, match="level 'box' unknown; valid: clip, person"):
        pretrain_backbone(**{**args, "level": "box"})


def test_no_keyframes_is_a_clear_error(clips):
    keyframes, labels = clips
    with pytest.raises(ValueError, match="no keyframes"):
        pretrain_backbone(keyframes=keyframes.iloc[:0], labels=labels, clip=CLIP, epochs=1,
                          lr=1e-3, batch_size=2, seed=0)


def test_the_stage_turns_groups_into_classes_and_names_unknown_groups(tmp_path, monkeypatch):
    from stages.params import ParamsError
    from stages.pretrain import target_classes

    monkeypatch.chdir(tmp_path)
    assert target_classes(()) is None
    assert target_classes(("pose",)) == list(range(1, 15))  # no groups.csv: AVA's 14 pose classes
    folder = tmp_path / "data/interim/labels"
    folder.mkdir(parents=True)
    (folder / "groups.csv").write_text("action_id,group,name\n1,pose,stand\n2,pose,sit\n5,memory,recover\n")
    assert target_classes(("pose",)) == [1, 2] and target_classes(("pose", "memory")) == [1, 2, 5]
    with pytest.raises(ParamsError, match=r"unknown group\(s\) \['poses'\].*\['memory', 'pose'\]"):
        target_classes(("poses",))
