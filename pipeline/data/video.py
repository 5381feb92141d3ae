"""Video decoding and encoding with PyAV.

Frame index and time are tied together by the stream's average frame rate:
frame ``i`` is shown at ``i / fps`` seconds after the stream's first
timestamp (``stream.start_time``), so files whose timestamps do not start at
zero index the same way as those that do.

Clips are sampled in time, not in frame counts: sample ``k`` of a clip of
``T`` frames is taken at ``center + (k - T // 2) * stride / fps`` seconds,
with ``fps`` the rate the clip is sampled at (PySlowFast's AVA offsets,
counted in frames of a video re-encoded at ``fps``), and shows the video's
frame nearest that time, clamped to ``[0, n - 1]`` so that a clip near
either end of the video repeats the first or last frame. PySlowFast
(``ffmpeg -r 30``) and AlphAction (``fps=25``) re-encode every video to one
rate before counting frames; taking the nearest frame is what that
re-encoding does, without the extra copy. A video already at ``fps`` gives
exactly the frames ``center + (k - T // 2) * stride``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# Frames a file may lack against its container's frame count before the file
# counts as truncated: some muxers round the last frame's duration.
_FRAME_COUNT_SLACK = 1


class VideoDecodeError(ValueError):
    """A video file could not be opened or decoded."""


@dataclass(frozen=True)
class VideoInfo:
    """Stream properties of a video file (its first video stream)."""

    fps: float
    num_frames: int
    width: int
    height: int
    duration: float


@dataclass(frozen=True)
class DecodedRange:
    """Frames ``first..last`` of a video and how much decoding they took.

    ``frames`` maps frame index -> RGB frame ``np.ndarray[H, W, 3] uint8``.
    ``num_decoded`` counts every frame the decoder produced, including those
    between the seek point (a keyframe) and ``first`` that were thrown away.
    """

    frames: dict[int, np.ndarray]
    num_decoded: int


def probe_video(path: Path | str, *, at_sec: float | None = None) -> VideoInfo:
    """Read fps, frame count, size and duration of ``path`` without decoding.

    ``at_sec`` only names the time a caller wants in error messages.
    """
    with _open(path, "probing" if at_sec is None else f"t={at_sec:.3f}s") as container:
        stream = container.streams.video[0]
        fps = _stream_fps(stream, path)
        num_frames = _stream_frame_count(stream, container, fps)
        return VideoInfo(
            fps=float(fps),
            num_frames=num_frames,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            duration=num_frames / float(fps),
        )


def clip_frame_indices(
    *, center_sec: float, num_frames: int, stride: int, fps: float, video_fps: float,
    total_frames: int,
) -> np.ndarray:
    """Frame indices ``np.ndarray[T] int`` of a clip centred on ``center_sec``.

    Sample ``k`` is taken at ``center_sec + (k - T // 2) * stride / fps``
    seconds and shows the frame whose timestamp ``i / video_fps`` is nearest
    (halves round up), clamped to ``[0, total_frames - 1]``.
    """
    if num_frames < 1 or stride < 1 or not fps > 0:
        raise ValueError(f"num_frames and stride must be >= 1 and fps > 0, got "
                         f"{num_frames}, {stride} and {fps}")
    if total_frames < 1:
        raise ValueError("the video has no frames")
    # Counted in frames of the video, so that fps == video_fps steps by whole
    # frames exactly as counting frames did (seconds would add rounding error).
    step = stride * float(video_fps) / float(fps)
    position = center_sec * float(video_fps) + (np.arange(num_frames) - num_frames // 2) * step
    return np.clip(np.floor(position + 0.5).astype(np.int64), 0, total_frames - 1)


def read_clip(
    path: Path | str, *, center_sec: float, num_frames: int, stride: int,
    short_side: int | None, fps: float | None,
) -> np.ndarray:
    """Decode the clip centred on ``center_sec`` (seconds from the file's start).

    ``num_frames`` samples ``stride`` frames apart at ``fps`` frames per
    second (see the module docstring); ``fps=None`` counts frames of the file
    itself, whatever its rate. Returns ``np.ndarray[T, H, W, 3] uint8`` RGB
    with ``T = num_frames``; when ``short_side`` is given, frames are resized
    (bilinear) so that their shorter side has that many pixels, keeping the
    aspect ratio. Only the frames from the keyframe before the clip to its
    last frame are decoded. Raises ``VideoDecodeError`` for unreadable or
    truncated files.
    """
    info = probe_video(path, at_sec=center_sec)
    indices = clip_frame_indices(
        center_sec=center_sec, num_frames=num_frames, stride=stride,
        fps=info.fps if fps is None else fps, video_fps=info.fps, total_frames=info.num_frames,
    )
    size = None if short_side is None else resized_shape(info.height, info.width, short_side=short_side)
    decoded = decode_frames(path, first=int(indices[0]), last=int(indices[-1]), size=size, at_sec=center_sec)
    return np.stack([decoded.frames[int(i)] for i in indices])


def read_frame(path: Path | str, *, time_sec: float, short_side: int | None = None) -> np.ndarray:
    """The single frame shown at ``time_sec``: ``np.ndarray[H, W, 3] uint8`` RGB."""
    return read_clip(path, center_sec=time_sec, num_frames=1, stride=1, short_side=short_side,
                     fps=None)[0]


def resized_shape(height: int, width: int, *, short_side: int) -> tuple[int, int]:
    """``(height, width)`` scaled so the shorter side equals ``short_side``."""
    if short_side < 1:
        raise ValueError(f"short_side must be >= 1, got {short_side}")
    scale = short_side / min(height, width)
    if height <= width:
        return short_side, max(1, int(round(width * scale)))
    return max(1, int(round(height * scale))), short_side


def decode_frames(
    path: Path | str, *, first: int, last: int, size: tuple[int, int] | None = None, at_sec: float | None = None
) -> DecodedRange:
    """Decode frames ``first..last`` (inclusive) of ``path`` after one seek.

    ``size`` is an optional ``(height, width)`` to resize to (bilinear).
    ``at_sec`` only names the requested time in error messages.
    A file that ends before ``last`` although its container promises more
    frames raises ``VideoDecodeError``; indices past the promised frame count
    are an error of the caller (``ValueError``).
    """
    where = f"t={at_sec:.3f}s" if at_sec is not None else f"frames {first}..{last}"
    with _open(path, where) as container:
        stream = container.streams.video[0]
        fps = _stream_fps(stream, path)
        total = _stream_frame_count(stream, container, fps)
        if not 0 <= first <= last < total:
            raise ValueError(f"{path}: frames {first}..{last} are outside the video's 0..{total - 1}")
        try:
            decoded = _decode_after_seek(container, stream, fps, first, last, size)
            if first not in decoded.frames:  # the seek landed after `first`
                container.seek(0, stream=stream, backward=True)
                decoded = _decode_after_seek(container, stream, fps, first, last, size, seek=False)
        except av.error.FFmpegError as err:
            raise VideoDecodeError(f"{path}: cannot decode video at {where}: {err}") from err
    missing = [i for i in range(first, last + 1) if i not in decoded.frames]
    if missing and (missing[0] < total - _FRAME_COUNT_SLACK or len(decoded.frames) == 0):
        raise VideoDecodeError(
            f"{path}: video ends early (truncated or corrupt): frames {missing[0]}..{last} needed at {where} "
            f"are missing although the file declares {total} frames; re-encode or re-download it"
        )
    for i in missing:  # at most the slack at the very end: repeat the last decoded frame
        decoded.frames[i] = decoded.frames[max(decoded.frames)]
    return decoded


def _decode_after_seek(container, stream, fps, first, last, size, seek=True) -> DecodedRange:
    start = stream.start_time or 0
    tb = stream.time_base
    if seek:
        container.seek(start + int(math.floor(first / (fps * tb))), stream=stream, backward=True)
    frames: dict[int, np.ndarray] = {}
    num_decoded = 0
    for frame in container.decode(stream):
        num_decoded += 1
        if frame.pts is None:
            continue
        idx = int(round((frame.pts - start) * tb * fps))
        if idx > last:
            break
        if idx >= first:
            frames[idx] = _to_rgb(frame, size)
    return DecodedRange(frames=frames, num_decoded=num_decoded)


def _to_rgb(frame: av.VideoFrame, size: tuple[int, int] | None) -> np.ndarray:
    if size is None:
        return frame.to_ndarray(format="rgb24")
    height, width = size
    resized = frame.reformat(width=width, height=height, format="rgb24", interpolation="BILINEAR")
    return resized.to_ndarray()


def write_video(
    path: Path | str,
    frames: Iterable[np.ndarray],
    *,
    fps: int,
    crf: int = 18,
    preset: str = "veryfast",
    keyframe_interval: int | None = None,
) -> int:
    """Encode RGB frames ``np.ndarray[H, W, 3] uint8`` to an H.264 mp4; returns the frame count.

    yuv420p needs even sizes, so ``H`` and ``W`` must be even. One encoder
    thread, no B-frames, no CPU-specific code and bit-exact muxing make the
    same frames give the same bytes.
    ``preset`` is the x264 speed / size trade-off (``ultrafast`` .. ``veryslow``).
    ``keyframe_interval`` (frames, default ``fps``: one per second) bounds
    how much a seek has to decode.
    """
    path = Path(path)
    count = 0
    with av.open(str(path), mode="w", container_options={"movflags": "+faststart", "fflags": "+bitexact"}) as out:
        stream = None
        for frame in frames:
            frame = np.ascontiguousarray(frame)
            if stream is None:
                gop = keyframe_interval or fps
                stream = _add_h264_stream(out, frame, path, fps=fps, crf=crf, preset=preset, gop=gop)
            _check_frame(frame, stream, path, count)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
            count += 1
        if stream is None:
            raise ValueError(f"{path}: no frames to write")
        for packet in stream.encode(None):
            out.mux(packet)
    return count


def _add_h264_stream(out, frame: np.ndarray, path: Path, *, fps: int, crf: int, preset: str, gop: int):
    _check_frame(frame, None, path, 0)
    height, width = frame.shape[:2]
    if height % 2 or width % 2:
        raise ValueError(f"{path}: frame size {width}x{height} must be even for yuv420p H.264")
    stream = out.add_stream("libx264", rate=Fraction(fps))
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.codec_context.thread_count = 1
    # libx264 (PyAV 16 wheels) gave different bytes from run to run for the same
    # frames, even single-threaded; without B-frames and with plain C code
    # (asm=0, about 3x slower) it has not
    stream.codec_context.options = {
        "crf": str(crf), "preset": preset, "threads": "1", "g": str(gop), "bf": "0", "x264-params": "asm=0",
    }
    stream.codec_context.flags |= av.codec.context.Flags.bitexact
    return stream


def _check_frame(frame: np.ndarray, stream, path: Path, index: int) -> None:
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"{path}: frame {index} must be uint8 [H, W, 3] RGB, got {frame.dtype} {frame.shape}")
    if stream is not None and frame.shape[:2] != (stream.height, stream.width):
        raise ValueError(
            f"{path}: frame {index} is {frame.shape[1]}x{frame.shape[0]}, "
            f"but the video is {stream.width}x{stream.height}"
        )


def _open(path: Path | str, where: str):
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"video file not found: {path}")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as err:
        raise VideoDecodeError(f"{path}: cannot open video ({where}): {err}") from err
    if not container.streams.video:
        container.close()
        raise VideoDecodeError(f"{path}: no readable video stream ({where}); is the file truncated or not a video?")
    return container


def _stream_fps(stream, path) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate
    if not rate:
        raise VideoDecodeError(f"{path}: video stream has no frame rate")
    return Fraction(rate)


def _stream_frame_count(stream, container, fps: Fraction) -> int:
    if stream.frames:
        return int(stream.frames)
    if stream.duration is not None:
        return int(round(stream.duration * stream.time_base * fps))
    return int(round(container.duration / av.time_base * fps))
