"""Benchmark: one training epoch on cached features vs. the same epoch with
the backbone in the loop.

Writes a small H.264 video (moving noise squares), caches its person and
object features with the real extraction (timed once, separately), and then
trains the action head for one epoch two ways over the same keyframe batches:

- cached: KeyframeDataset (preloaded) -> ActionClassifier.train_step;
- end to end: for every keyframe, decode its clip (read_clip) and run the
  SlowFast backbone forward and backward (as end-to-end trainers such as
  AlphAction fine-tune it), pool the person and object boxes, then the same
  head step. The memory bank comes from the cache in both (end-to-end
  trainers keep it as a feature bank too).

Prints the epoch times and their ratio (target: >= 100x), for the demo's
narrow backbone (widths / 4 at 96 px) and, beside it, for the standard
SlowFast R50 (widths / 1, stem (64, 8)) at 256 px over one keyframe batch.

    python bench/bench_train.py [--keyframes 24] [--batch-size 16] [--fusions none,serial,cube]
                                [--standard-batch 16] [--standard-fusions none,cube]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from mmengine.optim import OptimWrapper
from torch.utils.data import DataLoader

from avapipe.data.video import read_clip, write_video
from avapipe.features.backbone import (ClipSpec, FeatureExtractor, boxes_to_rois, build_slowfast,
                                       clips_to_pathways, pool_rois)
from avapipe.features.extract import extract_features
from avapipe.features.memory import build_memory_index
from avapipe.features.store import open_features
from avapipe.models.dataset import KeyframeDataset, collate_keyframes
from avapipe.models.predict import ActionClassifier
from avapipe.schemas import PARTS

FPS, WIDTH, HEIGHT = 12, 160, 120
BOXES = [(0.05, 0.1, 0.45, 0.95), (0.5, 0.1, 0.9, 0.95)]
ACTIONS, POSE = list(range(1, 13)), [True] * 4 + [False] * 8


def write_demo_video(path: Path, seconds: int, rng) -> None:
    def frames():
        for i in range(seconds * FPS):
            frame = rng.integers(0, 40, (HEIGHT, WIDTH, 3), dtype=np.uint8)
            x = 10 + (i * 3) % (WIDTH - 40)
            frame[30:90, x:x + 30] = 200
            yield frame
    write_video(path, frames(), fps=FPS)


def tables(video: Path, keyframes: int):
    seconds = np.arange(902, 902 + keyframes)
    kf = pd.DataFrame({"video_id": "bench", "timestamp": seconds, "split": "train",
                       "video_path": str(video), "time_sec": seconds - 900.0, "fps": float(FPS),
                       "width": WIDTH, "height": HEIGHT})
    persons = pd.DataFrame([("bench", t, b, *box, 0.9, "gt", -1) for t in seconds
                            for b, box in enumerate(BOXES)],
                           columns=["video_id", "timestamp", "box_id", "x1", "y1", "x2", "y2",
                                    "score", "source", "person_id"])
    objects = persons[persons["box_id"] == 0].drop(columns="person_id").assign(
        x1=0.4, y1=0.4, x2=0.6, y2=0.6, label="ball")
    return kf, persons, objects, PARTS.empty()  # no parts: the head here has no Pose-Part


def random_targets(rows: int, rng) -> np.ndarray:
    targets = (rng.random((rows, len(ACTIONS))) < 0.2).astype(np.float32)
    targets[:, :4] = np.eye(4, dtype=np.float32)[rng.integers(0, 4, rows)]
    return targets


def cached_epoch(model, loader) -> float:
    wrapper = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3))
    model.train()
    start = time.perf_counter()
    for batch in loader:
        model.train_step(batch, optim_wrapper=wrapper)
    return time.perf_counter() - start


def end_to_end_epoch(model, extractor, loader, keyframes, clip: ClipSpec, frozen: bool) -> float:
    params = list(model.parameters()) + ([] if frozen else list(extractor.parameters()))
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    times = dict(zip(keyframes["timestamp"], keyframes["time_sec"]))
    video = keyframes["video_path"].iloc[0]
    model.train()
    extractor.train(not frozen)
    start = time.perf_counter()
    for batch in loader:
        clips = torch.from_numpy(np.stack([
            read_clip(video, center_sec=times[int(t)], num_frames=clip.num_frames,
                      stride=clip.stride, short_side=clip.short_side, fps=clip.fps)
            for t in batch["timestamp"]]))
        with torch.set_grad_enabled(not frozen):
            maps = extractor(*clips_to_pathways(clips, alpha=clip.alpha))
        batch = dict(batch, persons=pooled(maps, batch["boxes"], batch["person_mask"], clips),
                     objects=pooled(maps, object_boxes(batch), batch["object_mask"], clips))
        optimizer.zero_grad()
        loss = model(mode="loss", **batch)
        sum(loss.values()).backward()
        optimizer.step()
    return time.perf_counter() - start


def object_boxes(batch) -> torch.Tensor:
    boxes = torch.zeros(batch["object_mask"].shape + (4,))
    boxes[batch["object_mask"]] = torch.tensor([0.4, 0.4, 0.6, 0.6])
    return boxes


def pooled(maps, boxes: torch.Tensor, mask: torch.Tensor, clips: torch.Tensor) -> torch.Tensor:
    """RoI vectors [B, N, C] of the real boxes [B, N, 4] (zeros at padding)."""
    clip_of = torch.nonzero(mask)[:, 0]
    rois = boxes_to_rois(boxes[mask], clip_of, height=clips.shape[2], width=clips.shape[3])
    vectors = pool_rois(maps.res5, rois)
    out = vectors.new_zeros(mask.shape + (vectors.shape[1],))
    out[mask] = vectors
    return out


def build_model(fusion: str, extractor: FeatureExtractor, hidden: int) -> ActionClassifier:
    torch.manual_seed(0)
    return ActionClassifier(head=dict(
        fusion=fusion, pose_part=False, in_channels=extractor.person_channels,
        part_channels=extractor.part_channels, num_classes=len(ACTIONS), hidden=hidden,
        memory_span=5, memory_per_second=2, dropout=0.2), action_ids=ACTIONS,
        pose_classes=POSE, gamma=2.0)


def measure(*, label: str, width_divisor: int, short_side: int, keyframes: int,
            batch_size: int, fusions: list[str], hidden: int, frozen: bool, folder: Path,
            rng) -> None:
    """Extracts the cache for ``keyframes`` keyframes with this backbone and prints,
    per fusion, one epoch over them on the cache and with the backbone in the loop."""
    clip = ClipSpec(num_frames=32, stride=2, alpha=4, short_side=short_side)
    video = folder / f"{label}.mp4"
    write_demo_video(video, keyframes + 6, rng)
    table, persons, objects, parts = tables(video, keyframes)
    extractor = FeatureExtractor(build_slowfast(width_divisor=width_divisor))
    start = time.perf_counter()
    extract_features(keyframes=table, persons=persons, objects=objects, parts=parts,
                     extractor=extractor, clip=clip, store_path=folder / f"{label}.zarr",
                     dtype="float32", num_workers=0, progress=False)
    extraction = time.perf_counter() - start
    store = open_features(folder / f"{label}.zarr")
    memory = build_memory_index(persons=store.persons, keyframes=table, span=5, per_second=2)
    data = KeyframeDataset(store, memory, keyframes=table,
                           targets=random_targets(len(store.persons), rng),
                           with_parts=False, preload=True)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0)).tolist()
    loader = DataLoader(data, batch_size=batch_size, sampler=order, collate_fn=collate_keyframes)
    params = sum(p.numel() for p in extractor.parameters()) / 1e6
    print(f"{label}: SlowFast R50 widths/{width_divisor} ({params:.1f} M parameters) at "
          f"{short_side}px, {clip.num_frames} frames; {keyframes} keyframes, {len(persons)} "
          f"persons, {len(loader)} batch(es) of {batch_size}; head hidden {hidden}")
    print(f"  one-time feature extraction: {extraction:.2f} s")
    mode = "forward only" if frozen else "forward + backward"
    for fusion in fusions:
        model = build_model(fusion, extractor, hidden)
        cached_epoch(model, loader)  # warm-up: first-call allocations
        cached = cached_epoch(model, loader)
        model = build_model(fusion, extractor, hidden)
        end_to_end = end_to_end_epoch(model, extractor, loader, table, clip, frozen)
        print(f"  fusion {fusion:>8}: cached epoch {cached * 1000:8.1f} ms | with backbone "
              f"({mode}) {end_to_end:7.2f} s | speed-up {end_to_end / cached:6.0f}x "
              "(target >= 100x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keyframes", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--short-side", type=int, default=96)
    parser.add_argument("--width-divisor", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--fusions", default="none,serial,cube",
                        help="comma-separated heads to time")
    parser.add_argument("--standard-batch", type=int, default=16,
                        help="keyframes of the one batch timed with the standard R50 at 256 px "
                             "(0: skip it)")
    parser.add_argument("--standard-fusions", default="none,cube",
                        help="comma-separated heads to time with the standard R50")
    parser.add_argument("--frozen", action="store_true", help="no backprop into the backbone")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    print(f"{args.threads} thread(s)")
    with tempfile.TemporaryDirectory() as folder:
        common = dict(hidden=args.hidden, frozen=args.frozen, folder=Path(folder), rng=rng)
        measure(label="demo", width_divisor=args.width_divisor, short_side=args.short_side,
                keyframes=args.keyframes, batch_size=args.batch_size,
                fusions=args.fusions.split(","), **common)
        if args.standard_batch:
            measure(label="standard", width_divisor=1, short_side=256,
                    keyframes=args.standard_batch, batch_size=args.standard_batch,
                    fusions=args.standard_fusions.split(","), **common)


if __name__ == "__main__":
    main()
