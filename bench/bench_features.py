"""Benchmark of feature extraction against the bare backbone on the same clips.

(a) backbone forward passes alone, on clips decoded beforehand, in the same
batches extraction forms; (b) the whole ``extract_features`` (decode in
workers, backbone, RoIAlign, Zarr writes in a thread). The ratio b/a shows
how much of decoding and writing is hidden behind compute (target <= 1.15).

    python bench/bench_features.py --videos 6 --seconds 8 --size 128
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from avapipe.data.video import read_clip, write_video
from avapipe.features.backbone import ClipSpec, FeatureExtractor, build_slowfast, clips_to_pathways
from avapipe.features.extract import extract_features
from avapipe.schemas import PART_NAMES


def make_inputs(folder: Path, *, videos: int, seconds: int, size: int, fps: int):
    """Moving-square videos with a keyframe every second, 2 persons + 1 object each."""
    keyframes, persons, objects, parts = [], [], [], []
    for v in range(videos):
        path = folder / f"v{v}.mp4"
        frames = []
        for f in range((seconds + 2) * fps):
            img = np.full((size, size, 3), 30 * v % 255, np.uint8)
            x = (3 * f) % (size // 2)
            img[size // 4: size // 2, x: x + size // 4] = 255
            frames.append(img)
        write_video(path, frames, fps=fps)
        for t in range(1, seconds + 1):
            key = dict(video_id=f"v{v}", timestamp=t)
            keyframes.append(dict(key, split="val", video_path=str(path), time_sec=float(t),
                                  fps=float(fps), width=size, height=size))
            for i, box in enumerate(((0.1, 0.1, 0.5, 0.9), (0.5, 0.2, 0.9, 0.8))):
                persons.append(dict(key, box_id=i, x1=box[0], y1=box[1], x2=box[2], y2=box[3],
                                    score=0.9, source="det", person_id=-1))
                part = dict(key, box_id=i)
                for k, name in enumerate(PART_NAMES):
                    part.update({f"{name}_x1": box[0], f"{name}_y1": box[1] + 0.05 * k,
                                 f"{name}_x2": box[2], f"{name}_y2": box[1] + 0.05 * k + 0.2,
                                 f"{name}_valid": True})
                parts.append(part)
            objects.append(dict(key, box_id=0, x1=0.0, y1=0.0, x2=0.3, y2=0.3, score=0.5,
                                source="det", person_id=-1, label="thing"))
    return tuple(pd.DataFrame(t) for t in (keyframes, persons, objects, parts))


def decode_batches(keyframes: pd.DataFrame, clip: ClipSpec, batch_size: int) -> list[torch.Tensor]:
    """The clips of each batch extraction forms (per video, in order), decoded up front."""
    batches = []
    for _, frames in keyframes.groupby("video_id", sort=True):
        for s in range(0, len(frames), batch_size):
            part = frames.iloc[s:s + batch_size]
            batches.append(torch.from_numpy(np.stack([
                read_clip(p, center_sec=t, num_frames=clip.num_frames, stride=clip.stride,
                          short_side=clip.short_side, fps=clip.fps)
                for p, t in zip(part.video_path, part.time_sec)])))
    return batches


def time_backbone(extractor, batches: list[torch.Tensor], alpha: int, device: str) -> float:
    """Seconds of the forward passes alone."""
    with torch.inference_mode():
        extractor(*clips_to_pathways(batches[0].to(device), alpha=alpha))  # warm-up
        _sync(device)
        start = time.perf_counter()
        for clips in batches:
            extractor(*clips_to_pathways(clips.to(device), alpha=alpha))
        _sync(device)
    return time.perf_counter() - start


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=6)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--fps", type=int, default=12)
    ap.add_argument("--depth", type=int, default=50)
    ap.add_argument("--width-divisor", type=int, default=4)
    ap.add_argument("--num-frames", type=int, default=32)
    ap.add_argument("--stride", type=int, default=2)
    ap.add_argument("--alpha", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=2, help="best of this many runs of each")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    clip = ClipSpec(num_frames=args.num_frames, stride=args.stride, alpha=args.alpha,
                    short_side=args.size)
    net = build_slowfast(depth=args.depth, alpha=args.alpha, width_divisor=args.width_divisor)
    extractor = FeatureExtractor(net).eval().to(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        keyframes, persons, objects, parts = make_inputs(
            Path(tmp), videos=args.videos, seconds=args.seconds, size=args.size, fps=args.fps)
        batches = decode_batches(keyframes, clip, args.batch_size)
        backbone_s, extract_s = [], []
        for r in range(args.repeats):  # alternated, so a load change hits both alike
            backbone_s.append(time_backbone(extractor, batches, args.alpha, args.device))
            start = time.perf_counter()
            extract_features(keyframes=keyframes, persons=persons, objects=objects, parts=parts,
                             extractor=extractor, clip=clip, store_path=Path(tmp) / f"f{r}.zarr",
                             batch_size=args.batch_size, num_workers=args.workers,
                             device=args.device, progress=False)
            _sync(args.device)
            extract_s.append(time.perf_counter() - start)
    rss_mb = max(resource.getrusage(who).ru_maxrss for who in
                 (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024
    a, b = min(backbone_s), min(extract_s)
    print(json.dumps({
        "clips": len(keyframes), "backbone_s": round(a, 3), "extract_s": round(b, 3),
        "ratio": round(b / a, 3), "clips_per_s": round(len(keyframes) / b, 2),
        "peak_rss_mb": round(rss_mb, 1),  # the largest of this process and its workers
        "device": args.device, "threads": args.threads, "repeats": args.repeats}))


if __name__ == "__main__":
    main()
