"""pose: 17 COCO keypoints for every person box."""

from __future__ import annotations

import pandas as pd

from avapipe.data.keyframes import iter_keyframe_images
from avapipe.perception import pose
from avapipe.schemas import KEYFRAMES, PERSONS, POSES, read_table, write_table
from stages import paths
from stages.params import Params, ParamsError
from stages.records import checked_inputs


def _gt_keypoints(table: pd.DataFrame) -> pd.DataFrame:
    """COCO visibility (0 absent, 1 occluded, 2 visible) → score 0, 0.5, 1."""
    visibility = [c for c in table.columns if c.endswith("_v")]
    scores = {c[:-2] + "_score": table[c] / 2.0 for c in visibility}
    return table.drop(columns=visibility).assign(**scores)


def run(params: Params) -> None:
    p = params.pose
    record = checked_inputs("pose", params, [paths.KEYFRAMES, paths.PERSONS, paths.LABELS])
    persons = read_table(PERSONS, paths.PERSONS)
    if p.source == "gt":
        if not paths.GT_KEYPOINTS.exists():
            raise ParamsError(
                f"params.yaml: pose.source=gt needs GT keypoints ({paths.GT_KEYPOINTS}), "
                "which only the built-in synthetic data has; use pose.source=mmpose")
        keypoints = _gt_keypoints(pd.read_csv(paths.GT_KEYPOINTS, dtype={"video_id": str}))
        poses = pose.poses_from_gt(keypoints=keypoints, persons=persons)
    else:
        model = pose.load_pose_model(config=p.config, checkpoint=p.checkpoint,
                                     device=params.device)
        keyframes = read_table(KEYFRAMES, paths.KEYFRAMES)
        keyframes = keyframes.merge(persons[["video_id", "timestamp"]].drop_duplicates())
        poses = pose.estimate_poses(model=model, images=iter_keyframe_images(keyframes),
                                    persons=persons, batch_size=p.batch_size)
    write_table(poses, POSES, paths.POSES, record=record)
    print(f"pose: {len(poses)} poses ({p.source})")
