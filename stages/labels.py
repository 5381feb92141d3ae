"""Reading the label files the prepare stage wrote (shared by train and evaluate)."""

from __future__ import annotations

import pandas as pd

from avapipe.data import ava
from avapipe.models.labels import ava_groups, read_groups_csv
from avapipe.schemas import KEYFRAMES, read_table
from stages import paths

GROUPS = paths.LABELS / "groups.csv"


def keyframes_of(split: str) -> pd.DataFrame:
    keyframes = read_table(KEYFRAMES, paths.KEYFRAMES)
    return keyframes[keyframes["split"] == split].reset_index(drop=True)


def groundtruth(split: str) -> pd.DataFrame:
    return groundtruth_csv(split).rows


def groundtruth_csv(split: str) -> ava.AvaCsv:
    """The split's GT rows and its keyframes annotated with no boxes."""
    return ava.read_groundtruth_csv(paths.groundtruth(split))


def exclusions() -> pd.DataFrame:
    return ava.read_excluded_timestamps(paths.EXCLUSIONS)


def trained_classes() -> dict[int, str]:
    """{action id: name} the classifier is trained on (prepare's training label
    space; the evaluated classes are ``ava.read_label_map(paths.LABEL_MAP)``)."""
    return ava.read_label_map(paths.TRAIN_LABEL_MAP)


def groups() -> dict[int, str]:
    """Class id → group: the dataset's groups.csv, else AVA's three groups."""
    return read_groups_csv(GROUPS) if GROUPS.exists() else ava_groups()
