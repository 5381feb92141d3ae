"""memory: the long-term memory bank, an index into the cached person rows."""

from __future__ import annotations

from avapipe.features.memory import build_memory_index, save_memory_index
from avapipe.features.store import open_features
from avapipe.outputs import replacing_folder
from avapipe.schemas import KEYFRAMES, read_table
from stages import paths
from stages.features import STORE
from stages.params import Params
from stages.records import checked_inputs

MEMORY = paths.FEATURES / "memory"


def run(params: Params) -> None:
    record = checked_inputs("memory", params, [STORE, paths.KEYFRAMES])
    store = open_features(STORE)
    index = build_memory_index(
        persons=store.persons, keyframes=read_table(KEYFRAMES, paths.KEYFRAMES),
        span=params.memory.span, per_second=params.memory.per_second,
    )
    with replacing_folder(MEMORY, record=record) as out:
        save_memory_index(index, out)
    sizes = (index.windows["hi"] - index.windows["lo"]).to_numpy()
    mean = sizes.mean() if sizes.size else 0.0
    print(f"memory: {len(index.windows)} keyframes, {mean:.1f} memory persons on average → {MEMORY}")
