from fractions import Fraction

import av
import numpy as np
import pytest

from avapipe.data.video import (
    VideoDecodeError,
    clip_frame_indices,
    decode_frames,
    probe_video,
    read_clip,
    read_frame,
    resized_shape,
    write_video,
)

HEIGHT, WIDTH = 48, 64
BITS_ROWS, BITS_COLS = 2, 4  # 8 big black/white squares: the frame's index in binary


def coded_frame(index: int) -> np.ndarray:
    """A frame whose 8 big squares spell ``index`` in binary (robust to H.264 loss)."""
    bits = [(index >> b) & 1 for b in range(BITS_ROWS * BITS_COLS)]
    grid = np.array(bits, dtype=np.uint8).reshape(BITS_ROWS, BITS_COLS) * 255
    block = np.kron(grid, np.ones((HEIGHT // BITS_ROWS, WIDTH // BITS_COLS), np.uint8))
    return np.repeat(block[:, :, None], 3, axis=2)


def frame_code(frame: np.ndarray) -> int:
    """Inverse of ``coded_frame`` for a frame of any size (squares scale with it)."""
    height, width = frame.shape[:2]
    bh, bw = height / BITS_ROWS, width / BITS_COLS
    code = 0
    for b in range(BITS_ROWS * BITS_COLS):
        r, c = divmod(b, BITS_COLS)
        rows = slice(int(r * bh + bh / 4), int((r + 1) * bh - bh / 4))
        cols = slice(int(c * bw + bw / 4), int((c + 1) * bw - bw / 4))
        inner = frame[rows, cols]
        code |= int(inner.mean() > 127) << b
    return code


def encode_coded(path, *, rate: Fraction, count: int):
    """``count`` coded frames at any ``rate`` (write_video takes whole fps) in
    the container ``path``'s suffix names."""
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for i in range(count):
            for packet in stream.encode(av.VideoFrame.from_ndarray(coded_frame(i), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def coded_video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "coded.mp4"
    write_video(path, (coded_frame(i) for i in range(40)), fps=10)
    return path


def test_probe_reports_what_was_written(coded_video):
    info = probe_video(coded_video)
    assert (info.fps, info.num_frames, info.width, info.height) == (10.0, 40, WIDTH, HEIGHT)
    assert info.duration == pytest.approx(4.0)


@pytest.mark.parametrize(
    ("center_sec", "expected"),
    [
        (2.0, [16, 18, 20, 22]),  # centre frame 20, offsets (-2, -1, 0, 1) * stride 2
        (0.1, [0, 0, 1, 3]),  # centre 1: -3 and -1 clamp to the first frame
        (3.9, [35, 37, 39, 39]),  # centre 39: 41 clamps to the last frame
    ],
)
def test_clip_frames_are_centred_and_clamped(coded_video, center_sec, expected):
    clip = read_clip(coded_video, center_sec=center_sec, num_frames=4, stride=2, short_side=None,
                     fps=10)  # the video's own rate: stride counts its frames
    assert clip.shape == (4, HEIGHT, WIDTH, 3) and clip.dtype == np.uint8
    assert [frame_code(f) for f in clip] == expected


def test_clip_resized_to_short_side(coded_video):
    clip = read_clip(coded_video, center_sec=1.0, num_frames=3, stride=1, short_side=24, fps=None)
    assert clip.shape == (3, 24, 32, 3)
    assert [frame_code(f) for f in clip] == [9, 10, 11]


def test_resized_shape_keeps_aspect_for_portrait_and_landscape():
    assert resized_shape(48, 64, short_side=24) == (24, 32)
    assert resized_shape(100, 50, short_side=25) == (50, 25)


def test_read_frame_returns_the_frame_at_that_time(coded_video):
    assert frame_code(read_frame(coded_video, time_sec=1.5)) == 15
    assert read_frame(coded_video, time_sec=1.5, short_side=12).shape == (12, 16, 3)


@pytest.mark.parametrize(("fps", "expected"), [
    # samples at 1.0 s + (-2, -1, 0, 1) × 2 / 30 s = 0.867, 0.933, 1.0, 1.067 s
    (25, [22, 23, 25, 27]),  # × 25 = 21.67, 23.33, 25, 26.67 → nearest frames
    (24, [21, 22, 24, 26]),  # × 24 = 20.8, 22.4, 24, 25.6
    (30, [26, 28, 30, 32]),  # at the sampling rate itself: every 2nd frame
])
def test_clips_are_sampled_in_time_at_30_fps_whatever_the_video_rate(tmp_path, fps, expected):
    path = tmp_path / f"coded_{fps}.mp4"
    write_video(path, (coded_frame(i) for i in range(2 * fps)), fps=fps)
    clip = read_clip(path, center_sec=1.0, num_frames=4, stride=2, short_side=None, fps=30)
    assert [frame_code(f) for f in clip] == expected


def test_ntsc_rate_maps_time_to_the_nearest_frame(tmp_path):
    """AVA movies are often 29.97 (30000/1001) fps: 1.0 s is frame 29.97 → 30."""
    path = encode_coded(tmp_path / "ntsc.mp4", rate=Fraction(30000, 1001), count=60)
    assert probe_video(path).fps == pytest.approx(29.97, abs=1e-3)
    # 1.0 s + (-1, 0, 1) × 3 / 30 s, × 29.97 = 26.97, 29.97, 32.97 → frames 27, 30, 33
    clip = read_clip(path, center_sec=1.0, num_frames=3, stride=3, short_side=None, fps=30)
    assert [frame_code(f) for f in clip] == [27, 30, 33]


def test_clip_indices_reject_empty_clips():
    with pytest.raises(ValueError, match="num_frames"):
        clip_frame_indices(center_sec=1.0, num_frames=0, stride=1, fps=30, video_fps=25,
                           total_frames=10)
    with pytest.raises(ValueError, match="fps"):
        clip_frame_indices(center_sec=1.0, num_frames=4, stride=1, fps=0, video_fps=25,
                           total_frames=10)


def test_seek_decodes_only_the_end_of_a_long_video(tmp_path):
    path = tmp_path / "long.mp4"
    write_video(path, (coded_frame(i) for i in range(200)), fps=10, keyframe_interval=10)
    decoded = decode_frames(path, first=190, last=193)
    assert sorted(decoded.frames) == [190, 191, 192, 193]
    assert [frame_code(decoded.frames[i]) for i in range(190, 194)] == [190, 191, 192, 193]
    # from the keyframe at or before 190 (at most 10 frames back) to 193, plus
    # a few frames of decoder look-ahead; decoding from the start would give 194
    assert decoded.num_decoded <= 20


def test_stream_start_offset_does_not_shift_indices(tmp_path):
    # MPEG-TS streams start at a non-zero timestamp
    path = encode_coded(tmp_path / "offset.ts", rate=Fraction(10), count=30)
    with av.open(str(path)) as check:
        assert check.streams.video[0].start_time > 0
    clip = read_clip(path, center_sec=1.2, num_frames=3, stride=3, short_side=None, fps=None)
    assert [frame_code(f) for f in clip] == [9, 12, 15]


def test_same_frames_give_the_same_bytes(tmp_path):
    # a drifting smooth pattern under noise: with B-frames, libx264 gave this
    # different bytes in most runs
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:64, 0:96]
    pattern = np.stack([np.sin(xs * 0.2 + ys * 0.1), np.cos(xs * 0.13), np.sin(ys * 0.3)], axis=-1)
    base = (pattern * 100 + 128).astype(np.uint8)
    frames = [np.roll(base, 3 * i, axis=1) // 2 + rng.integers(0, 40, size=base.shape, dtype=np.uint8)
              for i in range(48)]
    outputs = set()
    for run in range(6):
        write_video(tmp_path / f"run{run}.mp4", iter(frames), fps=6)
        outputs.add((tmp_path / f"run{run}.mp4").read_bytes())
    assert len(outputs) == 1


def test_truncated_video_raises_naming_file_and_time(tmp_path, coded_video):
    data = coded_video.read_bytes()
    cut = tmp_path / "cut_in_half.mp4"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoDecodeError, match=r"cut_in_half\.mp4.*t=3\.500s"):
        read_clip(cut, center_sec=3.5, num_frames=4, stride=1, short_side=None, fps=None)
    stub = tmp_path / "header_only.mp4"
    stub.write_bytes(data[:200])
    with pytest.raises(VideoDecodeError, match=r"header_only\.mp4.*t=1\.000s"):
        read_frame(stub, time_sec=1.0)


def test_video_cut_between_packets_reports_missing_frames(tmp_path, coded_video):
    with av.open(str(coded_video)) as container:
        stream = container.streams.video[0]
        offsets = {p.pts: p.pos for p in container.demux(stream) if p.pts is not None}
    cut = tmp_path / "cut_clean.mp4"  # ends exactly before the packet of frame 30
    cut.write_bytes(coded_video.read_bytes()[: offsets[int(30 / (10 * stream.time_base))]])
    with pytest.raises(VideoDecodeError, match=r"cut_clean\.mp4: video ends early.*t=3\.800s"):
        read_clip(cut, center_sec=3.8, num_frames=4, stride=1, short_side=None, fps=None)


def test_missing_file_and_odd_sizes_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        probe_video(tmp_path / "nope.mp4")
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "odd.mp4", [np.zeros((5, 8, 3), np.uint8)], fps=5)
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "empty.mp4", [], fps=5)
