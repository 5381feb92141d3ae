"""``avapipe probe``: the linear-probe diagnostic on this repo's cached features
(``avapipe.evaluation.probe``): per class group, does each source (objects,
other persons, memory, parts) add AP to the person feature?"""

from __future__ import annotations

import pandas as pd

from avapipe.data import ava
from avapipe.evaluation.probe import linear_probe
from avapipe.evaluation.probe_features import SOURCES, probe_features
from avapipe.features.memory import load_memory_index
from avapipe.features.store import open_features
from avapipe.models.dataset import KeyframeDataset
from avapipe.models.labels import match_targets
from stages import labels, paths
from stages.features import STORE
from stages.memory import MEMORY


def probe_table(*, sources: tuple[str, ...] = SOURCES, resamples: int, seed: int,
                max_train_rows: int) -> pd.DataFrame:
    """linear_probe of the train and val splits of the cached features, on the
    evaluated classes (the label map), targets matched to GT at IoU 0.5."""
    store = open_features(STORE)
    memory = load_memory_index(MEMORY) if MEMORY.exists() else None
    if memory is None and "memory" in sources:
        raise FileNotFoundError(f"{MEMORY} is missing: run `avapipe extract memory`, or "
                                "leave memory out of --source")
    evaluated = ava.read_label_map(paths.LABEL_MAP)
    truth = pd.concat([labels.groundtruth("train"), labels.groundtruth("val")],
                      ignore_index=True)
    targets = match_targets(boxes=store.persons, groundtruth=truth, action_ids=list(evaluated),
                            iou_threshold=0.5)
    splits = {}
    for split in ("train", "val"):
        dataset = KeyframeDataset(store, memory, keyframes=labels.keyframes_of(split),
                                  targets=targets, with_parts="parts" in sources, preload=True)
        splits[split] = probe_features(dataset, sources=sources)
        print(f"probe: {split}: {len(splits[split].person)} persons in {len(dataset)} keyframes")
    return linear_probe(train=splits["train"], val=splits["val"], action_ids=list(evaluated),
                        groups=labels.groups(), resamples=resamples, seed=seed,
                        max_train_rows=max_train_rows)
