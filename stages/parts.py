"""parts: ten body-part boxes per person from its keypoints."""

from __future__ import annotations

from avapipe.perception.parts import part_boxes
from avapipe.schemas import PARTS, PERSONS, POSES, read_table, write_table
from stages import paths
from stages.params import Params
from stages.records import checked_inputs


def run(params: Params) -> None:
    record = checked_inputs("parts", params, [paths.POSES, paths.PERSONS])
    parts = part_boxes(poses=read_table(POSES, paths.POSES),
                       persons=read_table(PERSONS, paths.PERSONS),
                       min_score=params.parts.min_score)
    write_table(parts, PARTS, paths.PARTS, record=record)
    valid = parts[[c for c in parts.columns if c.endswith("_valid")]].to_numpy()
    print(f"parts: {len(parts)} persons, {valid.mean() if valid.size else 0:.0%} of parts valid")
