"""features: SlowFast RoI vectors of every cached box → data/features/features.zarr."""

from __future__ import annotations

import pandas as pd

from avapipe.distributed import init_from_env, is_main_process
from avapipe.features.backbone import FeatureExtractor, build_slowfast
from avapipe.features.backbone_checkpoint import load_backbone_checkpoint
from avapipe.features.extract import extract_features, jittered_copies
from avapipe.schemas import KEYFRAMES, OBJECTS, PARTS, PERSONS, read_table
from stages import paths
from stages.params import Params
from stages.pretrain import BACKBONE, clip_spec
from stages.records import checked_inputs

STORE = paths.FEATURES / "features.zarr"
# A process that finished its videos waits at a barrier for the slowest one,
# up to a whole video's worth of clips on a slow device.
BARRIER_TIMEOUT_S = 12 * 3600


def build_extractor(params: Params) -> FeatureExtractor:
    b = params.backbone
    net = build_slowfast(depth=b.depth, alpha=b.alpha, beta_inv=b.beta_inv,
                         width_divisor=b.width_divisor)
    load_backbone_checkpoint(net, b.checkpoint or BACKBONE)
    return FeatureExtractor(net)


def persons_to_cache(persons: pd.DataFrame, keyframes: pd.DataFrame, params: Params):
    """Train boxes plus their jittered copies (box augmentation); others as they are."""
    split = persons.merge(keyframes[["video_id", "timestamp", "split"]], how="left")["split"]
    train = persons[split.to_numpy() == "train"]
    f = params.features
    return pd.concat([
        jittered_copies(train, copies=f.jitter_copies, max_shift=f.jitter, seed=f.seed),
        persons[split.to_numpy() != "train"].assign(copy=0),
    ], ignore_index=True)


def run(params: Params) -> None:
    f = params.features
    enlarge = (f.enlarge[0], f.enlarge[1])
    inputs = [paths.KEYFRAMES, paths.PERSONS, paths.OBJECTS, paths.PARTS]
    record = checked_inputs("features", params, inputs + ([] if params.backbone.checkpoint
                                                           else [BACKBONE.parent]))
    # Under torchrun / srun each process takes a share of the videos.
    init_from_env(device=params.device, timeout_s=BARRIER_TIMEOUT_S)
    keyframes = read_table(KEYFRAMES, paths.KEYFRAMES)
    persons = read_table(PERSONS, paths.PERSONS)
    summary = extract_features(
        keyframes=keyframes, persons=persons_to_cache(persons, keyframes, params),
        objects=read_table(OBJECTS, paths.OBJECTS), parts=read_table(PARTS, paths.PARTS),
        extractor=build_extractor(params), clip=clip_spec(params), store_path=STORE,
        dtype=f.dtype, batch_size=f.batch_size, num_workers=f.num_workers,
        device=params.device, enlarge=enlarge, record=record,
    )
    if is_main_process():
        clip = clip_spec(params)
        print(f"features: {summary} → {STORE}; clips of {clip.num_frames} frames, {clip.stride} "
              f"apart at {clip.fps:g} fps ({clip.span_sec:.2f} s), person boxes enlarged by "
              f"{list(enlarge)} for pooling")
