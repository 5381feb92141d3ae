"""prepare: the built-in synthetic mini-AVA, or a user's AVA / AVA-Kinetics
files → validated labels in ``data/interim/labels`` + the keyframe index."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from avapipe.data import ava
from avapipe.data.keyframes import index_annotated_keyframes, index_unannotated_videos
from avapipe.schemas import KEYFRAMES, write_table
from stages import paths
from stages.params import Params, ParamsError, check_choice

SPLITS = ("train", "val")


def _synthetic_files(params: Params) -> dict[str, Path]:
    from avapipe.data.synthetic import generate_dataset

    syn = params.synthetic
    if paths.RAW.exists():
        shutil.rmtree(paths.RAW)
    generate_dataset(
        out_dir=paths.SYNTHETIC, seed=syn.seed, num_train_videos=syn.train_videos,
        num_val_videos=syn.val_videos, seconds=syn.seconds, fps=syn.fps,
        width=syn.width, height=syn.height, progress=True,
    )
    ann = paths.SYNTHETIC / "annotations"
    return dict(
        videos=paths.SYNTHETIC / "videos", train=ann / "train.csv", val=ann / "val.csv",
        label_map=ann / "label_map.pbtxt", exclusions=ann / "excluded_timestamps.csv",
        keypoints=ann / "keypoints.csv", objects=ann / "objects.csv",
        groups=ann / "groups.csv",
    )


def _user_files(params: Params) -> dict[str, Path]:
    if not params.data.root:
        raise ParamsError(
            f"params.yaml: data.source={params.data.source!r} needs data.root, the "
            "folder laid out as the README's real-data section describes"
        )
    root = Path(params.data.root)
    d = params.data
    files = dict(videos=root / "videos", train=root / d.train_csv, val=root / d.val_csv,
                 label_map=root / d.label_map, exclusions=root / d.exclusions)
    # A manifest in data/raw makes DVC see a change of data root as a change.
    paths.RAW.mkdir(parents=True, exist_ok=True)
    (paths.RAW / "SOURCE").write_text(f"{params.data.source} {root.resolve()}\n")
    return files


def _copy_labels(files: dict[str, Path], params: Params) -> pd.DataFrame:
    """Writes validated label files into data/interim/labels; returns the
    annotated keyframes (``video_id, timestamp, split``)."""
    out = paths.LABELS
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    labels = ava.read_label_map(files["label_map"])
    ava.write_label_map(paths.LABEL_MAP, labels=labels)
    keyframes = []
    for split in SPLITS:
        gt = ava.read_groundtruth_csv(
            files[split], label_ids=set(labels), on_bad_row=params.data.on_bad_row)
        ava.write_groundtruth_csv(
            paths.groundtruth(split), rows=gt.rows, empty_keyframes=gt.empty_keyframes)
        keys = pd.concat([gt.rows[["video_id", "timestamp"]], gt.empty_keyframes])
        keyframes.append(keys.drop_duplicates().assign(split=split))
    excluded = (ava.read_excluded_timestamps(files["exclusions"])
                if files["exclusions"].exists() else pd.DataFrame(columns=["video_id", "timestamp"]))
    ava.write_excluded_timestamps(paths.EXCLUSIONS, keyframes=excluded)
    for extra in ("keypoints", "objects", "groups"):
        if extra in files and files[extra].exists():
            shutil.copy(files[extra], out / files[extra].name)
    both = keyframes[0].merge(keyframes[1], on=["video_id", "timestamp"])
    if len(both):
        v, t = both.iloc[0][["video_id", "timestamp"]]
        raise ParamsError(f"{files['train']} and {files['val']} both annotate {v},{t:04d} "
                          f"({len(both)} keyframes in both); the splits must not share keyframes")
    return pd.concat(keyframes, ignore_index=True)


def run(params: Params) -> None:
    source = check_choice(params.data.source, ("synthetic", "ava", "videos"),
                          key="data.source")
    if source == "videos":
        files = _user_files(params)
        index = index_unannotated_videos(video_dir=files["videos"])
        shutil.rmtree(paths.LABELS, ignore_errors=True)
        paths.LABELS.mkdir(parents=True)
        if files["label_map"].exists():  # names for pictures; predictions need none
            ava.write_label_map(paths.LABEL_MAP, labels=ava.read_label_map(files["label_map"]))
    else:
        files = _synthetic_files(params) if source == "synthetic" else _user_files(params)
        keyframes = _copy_labels(files, params)
        index = index_annotated_keyframes(
            keyframes=keyframes, video_dir=files["videos"],
            convention=params.data.convention if source == "ava" else "ava",
        )
    write_table(index, KEYFRAMES, paths.KEYFRAMES)
    print(f"prepare: {len(index)} keyframes in {index['video_id'].nunique()} videos "
          f"→ {paths.KEYFRAMES}")
