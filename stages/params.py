"""``params.yaml``, one frozen dataclass per section, strictly checked.

Unknown keys are rejected with the list of valid ones, so a typo in an
experiment (``dvc exp run -S detect.scor_thr=…``) fails loudly instead of
silently running the default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

PARAMS_FILE = Path("params.yaml")


class ParamsError(ValueError):
    """params.yaml does not match the expected sections, keys or types."""


@dataclass(frozen=True)
class DataParams:
    source: str = "synthetic"  # synthetic | ava | videos
    root: str = ""  # ava / videos: folder laid out as the README describes
    # auto (per file: Kinetics-named clips, else AVA movies / own seconds) | ava | kinetics | seconds
    convention: str = "auto"
    # Annotation files, relative to ``root`` (source: ava).
    train_csv: str = "annotations/ava_train_v2.2.csv"
    val_csv: str = "annotations/ava_val_v2.2.csv"
    label_map: str = "annotations/ava_action_list_v2.2_for_activitynet_2019.pbtxt"  # scored
    train_label_map: str = ""  # trained classes; "" = AVA's 80 action ids
    exclusions: str = "annotations/ava_val_excluded_timestamps_v2.2.csv"
    on_bad_row: str = "error"  # error | skip
    on_missing_video: str = "error"  # error | skip (Kinetics clips that could not be downloaded)


@dataclass(frozen=True)
class SyntheticParams:
    seed: int = 0
    train_videos: int = 12
    val_videos: int = 8
    seconds: int = 30
    fps: int = 12
    width: int = 160
    height: int = 120


@dataclass(frozen=True)
class DetectParams:
    source: str = "gt"  # gt | mmdet | proposals; boxes of the val / test splits
    train_source: str = "gt"  # boxes of the train split: gt | mmdet | proposals | same
    object_source: str = "gt"  # object boxes of every split: gt | mmdet | none
    config: str = ""  # mmdet config: a file path or a name shipped with mmdet
    checkpoint: str = ""  # path or URL
    proposals: str = ""  # proposals pickle or detection CSV (source: proposals)
    score_thr: float = 0.8
    jitter: float = 0.0  # gt source: relative box jitter
    batch_size: int = 4
    object_topk: int = 5
    object_score_thr: float = 0.1
    seed: int = 0  # of the gt jitter


@dataclass(frozen=True)
class PoseParams:
    source: str = "gt"  # gt | mmpose
    config: str = ""
    checkpoint: str = ""
    batch_size: int = 16


@dataclass(frozen=True)
class PartsParams:
    min_score: float = 0.3


@dataclass(frozen=True)
class BackboneParams:
    """The SlowFast network and its input clip, shared by pretrain and features."""

    checkpoint: str = ""  # pytorchvideo SlowFast checkpoint (path or URL); "" → pretrain
    depth: int = 50
    alpha: int = 4
    beta_inv: int = 8
    width_divisor: int = 4  # 1 = standard widths; 4 = the CPU demo's narrow network
    num_frames: int = 16  # fast-pathway frames
    stride: int = 5  # in frames at ``fps``
    short_side: int = 96
    fps: float = 30.0  # clips are sampled at this rate whatever the video's; span = num_frames * stride / fps


@dataclass(frozen=True)
class PretrainParams:
    epochs: int = 3
    lr: float = 0.001
    batch_size: int = 4
    seed: int = 0


@dataclass(frozen=True)
class FeaturesParams:
    dtype: str = "float16"  # float16 | float32
    batch_size: int = 4
    num_workers: int = 1
    jitter_copies: int = 0  # extra jittered copies of train boxes (box augmentation)
    jitter: float = 0.05
    enlarge: tuple[float, ...] = (0.0, 0.0)  # (x, y) growth of person boxes for pooling only
    seed: int = 0  # of the jittered copies


@dataclass(frozen=True)
class MemoryParams:
    span: int = 30  # L: seconds each side of the keyframe
    per_second: int = 5  # K: persons kept per second


@dataclass(frozen=True)
class TrainParams:
    checkpoint: str = ""  # a trained classifier to use instead of training (e.g. for data.source=videos)
    hidden: int = 256  # interaction-block width (AlphAction: 1024)
    fc_width: int = 1024  # the two fully connected layers before each classifier (AlphAction: 1024)
    padding: str = "mask"  # mask (padded slots out of the softmax) | attend (AlphAction: fixed-size zero padding)
    attend_self: bool = False  # the person block has the query person among its keys (AlphAction: true)
    epochs: int = 12
    lr: float = 0.001
    batch_size: int = 16
    dropout: float = 0.2
    gamma: float = 2.0  # focal-loss gamma (AlphAction: 2); 0 = plain softmax CE / sigmoid BCE
    optimizer: str = "adamw"  # adamw | sgd


@dataclass(frozen=True)
class EvaluateParams:
    top_k: int = 50  # result rows per keyframe, as the official reader keeps them; 0 = all


@dataclass(frozen=True)
class Params:
    seed: int = 0  # of training only: `dvc exp run -S seed=3` re-runs train + evaluate
    fusion: str = "none"
    pose_part: bool = False
    device: str = "cpu"
    data: DataParams = field(default_factory=DataParams)
    synthetic: SyntheticParams = field(default_factory=SyntheticParams)
    detect: DetectParams = field(default_factory=DetectParams)
    pose: PoseParams = field(default_factory=PoseParams)
    parts: PartsParams = field(default_factory=PartsParams)
    backbone: BackboneParams = field(default_factory=BackboneParams)
    pretrain: PretrainParams = field(default_factory=PretrainParams)
    features: FeaturesParams = field(default_factory=FeaturesParams)
    memory: MemoryParams = field(default_factory=MemoryParams)
    train: TrainParams = field(default_factory=TrainParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)


def load_params(path: Path = PARAMS_FILE) -> Params:
    """Reads and checks ``path``; every section and key is optional."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as err:
        raise ParamsError(f"{path}: not found; run from the project root") from err
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    return _build(Params, raw, where=str(path))


def _build(cls: type, raw: dict, *, where: str):
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ParamsError(
            f"{where}: unknown key(s) {unknown}; valid keys are {names}"
        )
    values = {}
    for name, value in raw.items():
        values[name] = _coerce(hints[name], value, where=f"{where}: {name}")
    return cls(**values)


def _coerce(hint, value, *, where: str):
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ParamsError(f"{where}: expected a section (mapping), got {value!r}")
        return _build(hint, value, where=where)
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ParamsError(f"{where}: expected a list, got {value!r}")
        (item,) = set(typing.get_args(hint)) - {Ellipsis}
        return tuple(_coerce(item, v, where=where) for v in value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    expected = hint if not isinstance(hint, types.UnionType) else typing.get_args(hint)
    if not isinstance(value, expected) or (hint is int and isinstance(value, bool)):
        raise ParamsError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")
    return value


def check_choice(value: str, choices, *, key: str) -> str:
    """Raises ParamsError unless ``value`` is one of ``choices`` (a dict or list)."""
    if value not in choices:
        raise ParamsError(f"params.yaml: {key}={value!r} is not one of {sorted(choices)}")
    return value
