"""``avapipe viz``: pictures of the pipeline's artifacts on chosen keyframes."""

from __future__ import annotations

from pathlib import Path

from avapipe.data import ava
from avapipe.schemas import KEYFRAMES, OBJECTS, PARTS, PERSONS, POSES, read_table
from avapipe.viz import render_keyframes, render_video
from stages import paths
from stages.evaluate import PREDICTIONS


def _tables(split: str) -> dict:
    """Whatever artifacts exist; a missing one is simply not drawn."""
    optional = {"persons": (PERSONS, paths.PERSONS), "objects": (OBJECTS, paths.OBJECTS),
                "poses": (POSES, paths.POSES), "parts": (PARTS, paths.PARTS)}
    tables = {name: read_table(schema, path) if path.exists() else None
              for name, (schema, path) in optional.items()}
    tables["predictions"] = (ava.read_results_csv(PREDICTIONS).rows
                             if PREDICTIONS.exists() else None)
    gt = paths.groundtruth(split)
    tables["groundtruth"] = ava.read_groundtruth_csv(gt).rows if gt.exists() else None
    return tables


def draw(*, out_dir: Path, video_ids, split: str, limit: int, mp4: bool, scale: int,
         top_k: int) -> list[Path]:
    keyframes = read_table(KEYFRAMES, paths.KEYFRAMES)
    keyframes = keyframes[keyframes["split"] == split]
    if video_ids:
        keyframes = keyframes[keyframes["video_id"].isin(video_ids)]
    if keyframes.empty:
        raise SystemExit(f"no {split} keyframes{' of ' + ', '.join(video_ids) if video_ids else ''}")
    # Small frames (the built-in data) are upscaled so the captions stay legible.
    scale = scale or max(1, round(480 / int(keyframes["height"].min())))
    tables = _tables(split)
    label_map = ava.read_label_map(paths.LABEL_MAP) if paths.LABEL_MAP.exists() else {}
    chosen = keyframes.head(limit) if limit else keyframes
    written = render_keyframes(keyframes=chosen, out_dir=out_dir, label_map=label_map,
                               scale=scale, top_k=top_k, **tables)
    if mp4:
        # One MP4 per file: a YouTube id's keyframes may lie in several clips.
        for video_path in chosen["video_path"].unique():
            out = Path(out_dir) / f"{Path(video_path).stem}.mp4"
            render_video(video_path=video_path,
                         keyframes=keyframes[keyframes["video_path"] == video_path],
                         out_path=out, label_map=label_map, scale=scale, top_k=top_k, **tables)
            written.append(out)
    return written
