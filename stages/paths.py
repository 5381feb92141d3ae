"""Where each artifact lives, relative to the project root (DVC's working dir)."""

from pathlib import Path

RAW = Path("data/raw")
SYNTHETIC = RAW / "synthetic"
INTERIM = Path("data/interim")
KEYFRAMES = INTERIM / "keyframes.parquet"
LABELS = INTERIM / "labels"
GT_KEYPOINTS = LABELS / "keypoints.csv"
GT_OBJECTS = LABELS / "objects.csv"
LABEL_MAP = LABELS / "label_map.pbtxt"  # the evaluated (scored) classes
TRAIN_LABEL_MAP = LABELS / "train_label_map.pbtxt"  # the trained classes
EXCLUSIONS = LABELS / "excluded_timestamps.csv"
PERSONS = INTERIM / "persons.parquet"
OBJECTS = INTERIM / "objects.parquet"
POSES = INTERIM / "poses.parquet"
PARTS = INTERIM / "parts.parquet"
FEATURES = Path("data/features")
MODELS = Path("models")
RESULTS = Path("data/results")


def groundtruth(split: str) -> Path:
    """The split's AVA GT CSV as the prepare stage writes it."""
    return LABELS / f"{split}.csv"
