"""prepare's checks that each split can be trained on or scored.

The train split needs at least one labelled person box to learn from, the
val split one box of a scored (label-map) class for a frame-mAP; an empty
or label-less CSV is refused here, naming the file, rather than deep inside
training.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from avapipe.data import ava
from stages.params import ParamsError

_USE = {"train": "to learn from", "val": "to score"}
_ROW = "video_id,timestamp,x1,y1,x2,y2,action_id[,person_id]"


def _skipped(groundtruth: ava.AvaCsv) -> str:
    count = sum(groundtruth.skipped.values())
    return f"; {count} bad rows were skipped (data.on_bad_row: skip)" if count else ""


def check_split(path: Path, *, split: str, groundtruth: ava.AvaCsv,
                evaluated: dict[int, str]) -> None:
    """Raises ParamsError if the split's GT CSV ``path`` has no labelled box
    (val: none of a class in the label map ``evaluated``)."""
    rows, empty = groundtruth.rows, groundtruth.empty_keyframes
    use = _USE.get(split, "to use")
    if rows.empty:
        what = (f"{len(empty)} keyframes, all two-column rows (no boxes)" if len(empty)
                else "no annotation rows")
        raise ParamsError(f"{path}: {what}{_skipped(groundtruth)}; the {split} split needs "
                          f"labelled person boxes {use}, rows of {_ROW}")
    if split == "val" and not rows["action_id"].isin(list(evaluated)).any():
        raise ParamsError(
            f"{path}: {len(rows)} labelled boxes, none of a class of the label map "
            f"({len(evaluated)} classes, e.g. {sorted(evaluated)[:5]}), so no frame-mAP can be "
            "computed; check data.label_map and the val CSV")


def check_indexed_splits(files: dict[str, Path], groundtruth: dict[str, ava.AvaCsv],
                         index: pd.DataFrame) -> None:
    """After videos were looked up: every split keeps a labelled box on an
    indexed keyframe (under on_missing_video: skip all could be left out)."""
    keys = index[["video_id", "timestamp"]].astype({"video_id": object})
    for split, gt in groundtruth.items():
        if gt.rows.merge(keys).empty:
            raise ParamsError(
                f"{files[split]}: none of its labelled keyframes has a video file in "
                f"{files['videos']} (data.on_missing_video: skip left them all out); the "
                f"{split} split needs labelled person boxes {_USE.get(split, 'to use')}")
