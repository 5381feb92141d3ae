"""prepare: the built-in synthetic mini-AVA, or a user's AVA / AVA-Kinetics
files → validated labels in ``data/interim/labels`` + the keyframe index."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from avapipe.data import ava
from avapipe.data.keyframes import index_annotated_keyframes, index_unannotated_videos
from avapipe.data.label_spaces import LabelSpaces, known_action_ids, label_spaces
from avapipe.outputs import replacing_folder
from avapipe.schemas import KEYFRAMES, write_table
from stages import paths
from stages.params import Params, ParamsError
from stages.records import checked_inputs
from stages.splits import check_indexed_splits, check_split

SPLITS = ("train", "val")


def _synthetic_files(root: Path) -> dict[str, Path]:
    """The files of a built-in dataset generated into ``root``."""
    ann = root / "annotations"
    return dict(
        videos=root / "videos", train=ann / "train.csv", val=ann / "val.csv",
        label_map=ann / "label_map.pbtxt", exclusions=ann / "excluded_timestamps.csv",
        keypoints=ann / "keypoints.csv", objects=ann / "objects.csv",
        groups=ann / "groups.csv",
    )


def _generate_synthetic(params: Params, record: dict) -> _Labels:
    """The built-in dataset, generated beside data/raw and put in its place
    once its labels read back; returns those labels."""
    from avapipe.data.synthetic import generate_dataset

    syn = params.synthetic
    with replacing_folder(paths.RAW, record=record) as raw:
        out = raw / paths.SYNTHETIC.relative_to(paths.RAW)
        generate_dataset(
            out_dir=out, seed=syn.seed, num_train_videos=syn.train_videos,
            num_val_videos=syn.val_videos, seconds=syn.seconds, fps=syn.fps,
            width=syn.width, height=syn.height, progress=True,
        )
        return _read_labels(_synthetic_files(out), params)


def _user_files(params: Params) -> dict[str, Path]:
    root = Path(params.data.root)
    d = params.data
    files = dict(videos=root / "videos", train=root / d.train_csv, val=root / d.val_csv,
                 label_map=root / d.label_map, exclusions=root / d.exclusions)
    if d.train_label_map:
        files["train_label_map"] = root / d.train_label_map
    return files


def _write_source(params: Params, record: dict) -> None:
    """A manifest in data/raw makes DVC see a change of data root as a change."""
    with replacing_folder(paths.RAW, record=record) as raw:
        (raw / "SOURCE").write_text(f"{params.data.source} {Path(params.data.root).resolve()}\n")


@dataclass(frozen=True)
class _Labels:
    spaces: LabelSpaces
    groundtruth: dict[str, ava.AvaCsv]  # per split
    keyframes: pd.DataFrame  # video_id, timestamp, split of every annotated keyframe


def _read_labels(files: dict[str, Path], params: Params) -> _Labels:
    """Reads and checks the label files; nothing is written."""
    evaluated = ava.read_label_map(files["label_map"])
    train_map = (ava.read_label_map(files["train_label_map"])
                 if "train_label_map" in files else None)
    known = known_action_ids(train_label_map=train_map, evaluated=evaluated)
    gts = {split: ava.read_groundtruth_csv(files[split], label_ids=known,
                                           on_bad_row=params.data.on_bad_row)
           for split in SPLITS}
    keyframes = []
    for split, gt in gts.items():
        keys = pd.concat([gt.rows[["video_id", "timestamp"]], gt.empty_keyframes])
        keyframes.append(keys.drop_duplicates().assign(split=split))
    both = keyframes[0].merge(keyframes[1], on=["video_id", "timestamp"])
    if len(both):
        v, t = both.iloc[0][["video_id", "timestamp"]]
        raise ParamsError(f"{files['train']} and {files['val']} both annotate {v},{t:04d} "
                          f"({len(both)} keyframes in both); the splits must not share keyframes")
    for split, gt in gts.items():
        check_split(files[split], split=split, groundtruth=gt, evaluated=evaluated)
    spaces = label_spaces(train_action_ids=gts["train"].rows["action_id"],
                          train_label_map=train_map, evaluated=evaluated)
    return _Labels(spaces, gts, pd.concat(keyframes, ignore_index=True))


def _write_labels(files: dict[str, Path], labels: _Labels, index: pd.DataFrame,
                  record: dict) -> None:
    """Validated label files in data/interim/labels, holding only the indexed
    keyframes (a keyframe without its video can be neither trained nor scored)."""
    with replacing_folder(paths.LABELS, record=record) as out:
        ava.write_label_map(out / paths.LABEL_MAP.name, labels=labels.spaces.evaluated)
        ava.write_label_map(out / paths.TRAIN_LABEL_MAP.name, labels=labels.spaces.trained)
        keys = index[["video_id", "timestamp"]].astype({"video_id": object})
        for split, gt in labels.groundtruth.items():
            ava.write_groundtruth_csv(out / paths.groundtruth(split).name,
                                      rows=gt.rows.merge(keys),
                                      empty_keyframes=gt.empty_keyframes.merge(keys))
        excluded = (ava.read_excluded_timestamps(files["exclusions"])
                    if files["exclusions"].exists()
                    else pd.DataFrame(columns=["video_id", "timestamp"]))
        ava.write_excluded_timestamps(out / paths.EXCLUSIONS.name, keyframes=excluded)
        for extra in ("keypoints", "objects", "groups"):
            if extra in files and files[extra].exists():
                shutil.copy(files[extra], out / files[extra].name)


def _report(files: dict[str, Path], labels: _Labels, missing: pd.DataFrame) -> None:
    """What the user should know: both label spaces, rows and keyframes left out."""
    train_space = (files["train_label_map"].name if "train_label_map" in files
                   else "AVA's ids 1-80")
    print("prepare: " + labels.spaces.describe(
        train_source=f"action ids of {files['train'].name} in {train_space}",
        evaluated_source=files["label_map"].name))
    for split, gt in labels.groundtruth.items():
        if gt.skipped:
            print(f"prepare: {files[split].name}: skipped bad rows {gt.skipped} "
                  "(data.on_bad_row: skip)")
    if len(missing):
        first = ", ".join(f"{v},{t:04d}" for v, t in missing[["video_id", "timestamp"]].head(3)
                          .itertuples(index=False))
        print(f"prepare: left out {len(missing)} keyframes of {missing['video_id'].nunique()} "
              f"videos without a video file (data.on_missing_video: skip), e.g. {first}")


def _annotated_index(source: str, params: Params, record: dict) -> pd.DataFrame:
    """Labels and videos are read and checked before any output is replaced;
    the built-in data is generated beside data/raw, checked there, and then
    takes data/raw's place (the videos' paths in the index are the final ones)."""
    if source == "synthetic":
        labels = _generate_synthetic(params, record)
        files = _synthetic_files(paths.SYNTHETIC)
    else:
        files = _user_files(params)
        labels = _read_labels(files, params)
    result = index_annotated_keyframes(
        keyframes=labels.keyframes, video_dir=files["videos"],
        convention=params.data.convention if source == "ava" else "ava",
        on_missing_video=params.data.on_missing_video)
    check_indexed_splits(files, labels.groundtruth, result.keyframes)
    if source != "synthetic":
        _write_source(params, record)
    _write_labels(files, labels, result.keyframes, record)
    _report(files, labels, result.missing)
    return result.keyframes


def _unannotated_index(params: Params, record: dict) -> pd.DataFrame:
    files = _user_files(params)
    index = index_unannotated_videos(video_dir=files["videos"], convention=params.data.convention)
    # names for pictures; predictions need none
    label_map = ava.read_label_map(files["label_map"]) if files["label_map"].exists() else None
    _write_source(params, record)
    with replacing_folder(paths.LABELS, record=record) as out:
        if label_map is not None:
            ava.write_label_map(out / paths.LABEL_MAP.name, labels=label_map)
    return index


def run(params: Params) -> None:
    record = checked_inputs("prepare", params, [])
    if params.data.source == "videos":
        index = _unannotated_index(params, record)
    else:
        index = _annotated_index(params.data.source, params, record)
    write_table(index, KEYFRAMES, paths.KEYFRAMES, record=record)
    print(f"prepare: {len(index)} keyframes in {index['video_id'].nunique()} videos "
          f"→ {paths.KEYFRAMES}")
