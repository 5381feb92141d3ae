import os

import pytest

from avapipe.data.video_files import VideoFolderError, file_convention, scan_videos


def _touch(folder, *names):
    for name in names:
        (folder / name).write_bytes(b"")


def test_auto_reads_kinetics_names_as_clips_and_the_rest_as_movies(tmp_path):
    _touch(tmp_path, "0f39OWEqJ24.mkv", "a_b-c_DEF_000010_000020.mp4", "x1_000100_000110.webm",
           "notes.txt", "x1_000095_000105.mp4")
    folder = scan_videos(tmp_path, convention="auto")
    assert list(folder.movies) == ["0f39OWEqJ24"]
    assert folder.movies["0f39OWEqJ24"].convention == "ava"
    assert sorted(folder.clips) == ["a_b-c_DEF", "x1"]
    assert [(c.start, c.end) for c in folder.clips["x1"]] == [(95, 105), (100, 110)]
    assert len(folder.files()) == 4


def test_explicit_conventions(tmp_path):
    _touch(tmp_path, "movie.mp4", "yt_000010_000020.mp4")
    ava = scan_videos(tmp_path, convention="ava")
    assert sorted(ava.movies) == ["movie", "yt_000010_000020"] and not ava.clips
    kinetics = scan_videos(tmp_path, convention="kinetics")
    assert not kinetics.movies and list(kinetics.clips) == ["yt"]
    own = scan_videos(tmp_path, convention="auto", default="seconds")
    assert own.movies["movie"].convention == "seconds"
    assert file_convention("yt_000010_000020", "seconds", default="ava") == "seconds"
    with pytest.raises(VideoFolderError, match="not one of"):
        file_convention("movie", "cuts", default="ava")


def test_each_keyframe_uses_the_clip_containing_it(tmp_path):
    _touch(tmp_path, "yt_000010_000020.mp4", "yt_000016_000026.mp4", "yt_000040_000050.mp4")
    folder = scan_videos(tmp_path, convention="kinetics")
    name = lambda t: os.path.basename(folder.locate("yt", t).path)  # noqa: E731
    assert name(12) == "yt_000010_000020.mp4"
    assert name(17) == "yt_000010_000020.mp4"  # in both: centres 15 and 21
    assert name(19) == "yt_000016_000026.mp4"
    assert name(45) == "yt_000040_000050.mp4"
    assert folder.locate("yt", 30) is None and folder.locate("other", 12) is None


def test_one_id_in_two_files_is_refused(tmp_path):
    _touch(tmp_path, "0f39OWEqJ24.mp4", "0f39OWEqJ24.webm")
    with pytest.raises(VideoFolderError, match="0f39OWEqJ24.mp4 and .*0f39OWEqJ24.webm"):
        scan_videos(tmp_path, convention="auto")


def test_the_folder_is_listed_once(tmp_path, monkeypatch):
    _touch(tmp_path, *(f"yt{i}_000010_000020.mp4" for i in range(50)))
    calls = []
    real = os.scandir
    monkeypatch.setattr(os, "scandir", lambda p: calls.append(p) or real(p))
    folder = scan_videos(tmp_path, convention="auto")
    assert all(folder.locate(f"yt{i}", 15) for i in range(50)) and len(calls) == 1


def test_a_missing_folder_is_named(tmp_path):
    with pytest.raises(VideoFolderError, match="videos.*not found"):
        scan_videos(tmp_path / "videos", convention="auto")
