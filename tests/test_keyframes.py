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


@pytest.fixture(scope="module")
def long_videos(tmp_path_factory):
    """A whole movie (1801 s) and a 1000 s file, at 1 fps to stay small."""
    folders = {}
    for name, seconds in (("whole", 1801), ("odd", 1000)):
        folders[name] = tmp_path_factory.mktemp(name)
        _video(folders[name] / f"{name}.mp4", seconds=seconds, fps=1, size=(16, 16))
    return folders


def test_ava_convention_puts_second_902_at_2s(tmp_path):
    _video(tmp_path / "0f39OWEqJ24.mp4", seconds=6)
    keyframes = pd.DataFrame({"video_id": ["0f39OWEqJ24"] * 2, "timestamp": [904, 902],
                              "split": ["val", "val"]})
    index = index_annotated_keyframes(keyframes=keyframes, video_dir=tmp_path,
                                      convention="ava").keyframes
    assert index["timestamp"].tolist() == [902, 904]
    assert index["time_sec"].tolist() == [2.0, 4.0]
    assert index.loc[0, "fps"] == 5.0 and (index.loc[0, "width"], index.loc[0, "height"]) == (48, 32)


def test_kinetics_convention_finds_the_clip_by_prefix(tmp_path):
    _video(tmp_path / "abc-DEF_123_000010_000016.mp4", seconds=6)
    _video(tmp_path / "abc-DEF_123_000030_000036.mp4", seconds=6)
    keyframes = pd.DataFrame({"video_id": ["abc-DEF_123"] * 2, "timestamp": [13, 35],
                              "split": ["train", "train"]})
    index = index_annotated_keyframes(keyframes=keyframes, video_dir=tmp_path,
                                      convention="kinetics").keyframes
    assert index["time_sec"].tolist() == [3.0, 5.0]
    assert index["video_path"].str.contains("000030").tolist() == [False, True]


def test_missing_video_and_out_of_range_keyframe_are_named(tmp_path):
    _video(tmp_path / "aaaaaaaaaaa.mp4", seconds=3)
    missing = pd.DataFrame({"video_id": ["bbbbbbbbbbb"], "timestamp": [902], "split": ["val"]})
    with pytest.raises(KeyframeError, match="bbbbbbbbbbb,0902.*on_missing_video: skip"):
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


def test_missing_videos_are_skipped_and_listed_when_asked(tmp_path):
    _video(tmp_path / "yt_a_000010_000016.mp4", seconds=6)
    keyframes = pd.DataFrame({"video_id": ["yt_a", "yt_b", "yt_a", "yt_b"],
                              "timestamp": [13, 13, 40, 14], "split": ["train"] * 4})
    result = index_annotated_keyframes(keyframes=keyframes, video_dir=tmp_path,
                                       convention="auto", on_missing_video="skip")
    assert list(zip(result.keyframes["video_id"], result.keyframes["timestamp"])) == [("yt_a", 13)]
    assert result.missing.to_dict("list") == {"video_id": ["yt_a", "yt_b", "yt_b"],
                                              "timestamp": [40, 13, 14], "split": ["train"] * 3}
    with pytest.raises(KeyframeError, match="3 of 4 keyframes, 2 videos lack one"):
        index_annotated_keyframes(keyframes=keyframes, video_dir=tmp_path, convention="auto")


def test_ava_movies_and_kinetics_clips_in_one_index(tmp_path):
    """AVA-Kinetics: the convention is decided per file; one id split over two clips."""
    _video(tmp_path / "0f39OWEqJ24.mkv", seconds=5, fps=4)
    _video(tmp_path / "abc_000010_000014.mkv", seconds=4)
    _video(tmp_path / "abc_000013_000017.mp4", seconds=4)
    keyframes = pd.DataFrame({"video_id": ["0f39OWEqJ24", "abc", "abc"],
                              "timestamp": [903, 11, 15], "split": ["train", "val", "val"]})
    index = index_annotated_keyframes(keyframes=keyframes, video_dir=tmp_path,
                                      convention="auto").keyframes
    assert index["time_sec"].tolist() == [3.0, 1.0, 2.0]
    assert [p.rsplit("/", 1)[1] for p in index["video_path"]] == [
        "0f39OWEqJ24.mkv", "abc_000010_000014.mkv", "abc_000013_000017.mp4"]
    assert index["fps"].tolist() == [4.0, 5.0, 5.0]


def test_a_whole_movie_is_read_at_movie_seconds(tmp_path, long_videos):
    keyframes = pd.DataFrame({"video_id": ["whole"] * 2, "timestamp": [902, 1798],
                              "split": ["val"] * 2})
    index = index_annotated_keyframes(keyframes=keyframes, video_dir=long_videos["whole"],
                                      convention="ava").keyframes
    assert index["time_sec"].tolist() == [902.0, 1798.0]


def test_a_file_neither_cut_nor_whole_is_refused_with_the_cut_command(long_videos):
    keyframes = pd.DataFrame({"video_id": ["odd"], "timestamp": [902], "split": ["val"]})
    with pytest.raises(KeyframeError, match=r"odd.mp4 is 1000.0 s long.*ffmpeg -ss 900 -t 901"):
        index_annotated_keyframes(keyframes=keyframes, video_dir=long_videos["odd"],
                                  convention="ava")


def test_own_videos_under_the_ava_convention_are_named_by_movie_second(tmp_path, long_videos):
    _video(tmp_path / "cut.mp4", seconds=5)
    index = index_unannotated_videos(video_dir=tmp_path, convention="ava")
    assert index["timestamp"].tolist() == [902, 903, 904]
    assert index["time_sec"].tolist() == [2.0, 3.0, 4.0]
    whole = index_unannotated_videos(video_dir=long_videos["whole"], convention="ava")
    assert whole["timestamp"].tolist() == list(range(902, 1799))
    assert whole["time_sec"].iloc[0] == 902.0


def test_own_kinetics_clips_are_named_by_youtube_second(tmp_path):
    _video(tmp_path / "abc_000010_000014.mp4", seconds=4)
    _video(tmp_path / "abc_000013_000017.mp4", seconds=4)
    _video(tmp_path / "mine.mp4", seconds=3)
    index = index_unannotated_videos(video_dir=tmp_path, convention="auto")
    assert list(zip(index["video_id"], index["timestamp"], index["time_sec"])) == [
        ("abc", 11, 1.0), ("abc", 12, 2.0), ("abc", 13, 3.0),  # 13: centred closer in the first
        ("abc", 14, 1.0), ("abc", 15, 2.0), ("abc", 16, 3.0), ("mine", 1, 1.0), ("mine", 2, 2.0)]
