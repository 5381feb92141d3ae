import numpy as np
import pandas as pd
import pytest

from avapipe.data.keyframes import (
    KeyframeError, index_annotated_keyframes, index_unannotated_videos, iter_keyframe_images,
)
from avapipe.data.video import write_video


def _video(path, *, seconds: int, fps: int = 5, size=(32, 48)):
    frames = [np.full((*size, 3), (i * 7) % 255, np.uint8) for i in range(seconds * fps)]
    write_video(path, frames, fps=fps)
    return path


def test_ava_convention_puts_second_902_at_2s(tmp_path):
    _video(tmp_path / "0f39OWEqJ24.mp4", seconds=6)
    keyframes = pd.DataFrame({"video_id": ["0f39OWEqJ24"] * 2, "timestamp": [904, 902],
                              "split": ["val", "val"]})
    index = index_annotated_keyframes(keyframes=keyframes, video_dir=tmp_path, convention="ava")
    assert index["timestamp"].tolist() == [902, 904]
    assert index["time_sec"].tolist() == [2.0, 4.0]
    assert index.loc[0, "fps"] == 5.0 and (index.loc[0, "width"], index.loc[0, "height"]) == (48, 32)


def test_kinetics_convention_finds_the_clip_by_prefix(tmp_path):
    _video(tmp_path / "abc-DEF_123_000010_000016.mp4", seconds=6)
    _video(tmp_path / "abc-DEF_123_000030_000036.mp4", seconds=6)
    keyframes = pd.DataFrame({"video_id": ["abc-DEF_123"] * 2, "timestamp": [13, 35],
                              "split": ["train", "train"]})
    index = index_annotated_keyframes(keyframes=keyframes, video_dir=tmp_path,
                                      convention="kinetics")
    assert index["time_sec"].tolist() == [3.0, 5.0]
    assert index["video_path"].str.contains("000030").tolist() == [False, True]


def test_missing_video_and_out_of_range_keyframe_are_named(tmp_path):
    _video(tmp_path / "aaaaaaaaaaa.mp4", seconds=3)
    missing = pd.DataFrame({"video_id": ["bbbbbbbbbbb"], "timestamp": [902], "split": ["val"]})
    with pytest.raises(KeyframeError, match="bbbbbbbbbbb,0902"):
        index_annotated_keyframes(keyframes=missing, video_dir=tmp_path, convention="ava")
    late = pd.DataFrame({"video_id": ["aaaaaaaaaaa"], "timestamp": [950], "split": ["val"]})
    with pytest.raises(KeyframeError, match="aaaaaaaaaaa,0950.*data.convention"):
        index_annotated_keyframes(keyframes=late, video_dir=tmp_path, convention="ava")


def test_unannotated_videos_get_one_keyframe_per_second(tmp_path):
    _video(tmp_path / "clip.mp4", seconds=5)
    index = index_unannotated_videos(video_dir=tmp_path)
    assert index["timestamp"].tolist() == [1, 2, 3, 4]
    assert set(index["split"]) == {"test"}
    images = list(iter_keyframe_images(index.head(2)))
    assert [key for key, _ in images] == [("clip", 1), ("clip", 2)]
    assert images[0][1].shape == (32, 48, 3)


def test_empty_folder_gives_an_empty_index(tmp_path):
    assert len(index_unannotated_videos(video_dir=tmp_path)) == 0
