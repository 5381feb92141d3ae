"""pretrain: brief training of the SlowFast backbone on the train split (the
built-in data's stand-in for a Kinetics / AVA checkpoint), at the level and
on the class groups ``pretrain`` names. Skipped when ``backbone.checkpoint``
names a real checkpoint."""

from __future__ import annotations

import dataclasses

from avapipe.data import ava
from avapipe.features.backbone import ClipSpec
from avapipe.features.pretrain import pretrain_backbone, save_backbone_checkpoint
from avapipe.schemas import KEYFRAMES, read_table
from stages import labels, paths
from avapipe.outputs import replacing_folder
from stages.params import Params, ParamsError
from stages.records import checked_inputs

OUT = paths.MODELS / "pretrain"
BACKBONE = OUT / "backbone.pt"


def clip_spec(params: Params) -> ClipSpec:
    b = params.backbone
    return ClipSpec(num_frames=b.num_frames, stride=b.stride, alpha=b.alpha,
                    short_side=b.short_side, fps=b.fps)


def target_classes(groups: tuple[str, ...]) -> list[int] | None:
    """The class ids of ``groups`` (the data's groups.csv, or AVA's); None for
    every class when ``groups`` is empty."""
    if not groups:
        return None
    known = labels.groups()
    unknown = sorted(set(groups) - set(known.values()))
    if unknown:
        raise ParamsError(f"pretrain.groups: unknown group(s) {unknown}; this data's groups are "
                          f"{sorted(set(known.values()))} ({labels.GROUPS if labels.GROUPS.exists() else 'AVA'})")
    return sorted(a for a, g in known.items() if g in groups)


def run(params: Params) -> None:
    b, p = params.backbone, params.pretrain
    record = checked_inputs("pretrain", params, [paths.KEYFRAMES, paths.LABELS])
    if b.checkpoint:
        with replacing_folder(OUT, record=record) as out:
            (out / "SKIPPED").write_text(f"backbone.checkpoint is set: {b.checkpoint}\n")
        print(f"pretrain: skipped, features use {b.checkpoint}")
        return
    keyframes = read_table(KEYFRAMES, paths.KEYFRAMES)
    keyframes = keyframes[keyframes["split"] == "train"]
    if keyframes.empty:
        raise ParamsError("pretrain: no train keyframes to pretrain on; set "
                          "backbone.checkpoint to a trained SlowFast checkpoint")
    gt = ava.read_groundtruth_csv(paths.groundtruth("train")).rows
    result = pretrain_backbone(
        keyframes=keyframes, labels=gt, clip=clip_spec(params), depth=b.depth,
        beta_inv=b.beta_inv, width_divisor=b.width_divisor, epochs=p.epochs, lr=p.lr,
        batch_size=p.batch_size, seed=p.seed, progress=True, level=p.level,
        action_ids=target_classes(p.groups),
    )
    config = {**dataclasses.asdict(b), **dataclasses.asdict(p)}
    with replacing_folder(OUT, record=record) as out:
        save_backbone_checkpoint(result, out / BACKBONE.name, config=config)
    print(f"pretrain: losses per epoch {[round(x, 4) for x in result.epoch_losses]} → {BACKBONE}")
