"""``params.yaml``, one frozen dataclass per section, strictly checked.

Unknown keys are rejected with the list of valid ones, so a typo in an
experiment (``dvc exp run -S detect.scor_thr=…``) fails loudly instead of
silently running the default.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import yaml

# ParamsError and check_choice are used by the stages through this module.
from stages.param_checks import (  # noqa: F401
    ParamsError, Section, build_section, check_choice, registry_names,
)

PARAMS_FILE = Path("params.yaml")

DATA_SOURCES = ("synthetic", "ava", "videos")
DETECT_SOURCES = ("gt", "mmdet", "proposals")
OBJECT_SOURCES = ("gt", "mmdet", "none")
POSE_SOURCES = ("gt", "mmpose")
DEVICES = ("cpu", "cuda")
# The keys of avapipe.models.head.FUSIONS and avapipe.models.train.OPTIMIZERS
# (tests/test_params.py checks that they agree), named here so that reading
# params.yaml imports neither torch nor mmengine.
FUSION_NAMES = ("none", "serial", "dense", "parallel", "cube")
OPTIMIZER_NAMES = ("adamw", "sgd")
PADDING_NAMES = ("mask", "attend")
PART_POOLING_NAMES = ("concat", "mean")
MEMORY_READER_NAMES = ("attention", "spans")
PRETRAIN_LEVELS = ("clip", "person")


@dataclass(frozen=True)
class DataParams(Section):
    SECTION: ClassVar[str] = "data"
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

    def __post_init__(self) -> None:
        self._choice("source", DATA_SOURCES)
        if self.source == "synthetic":
            # The built-in data names its files itself; another value would be ignored.
            self._require("convention", self.convention == "auto",
                          "the built-in data (data.source: synthetic) takes only 'auto'")
        else:
            self._choice("convention", registry_names("avapipe.data.video_files", "CONVENTIONS"))
            self._require("root", bool(self.root), f"data.source={self.source!r} needs the "
                          "folder laid out as the README's real-data section describes")
        if self.source == "ava":
            for name in ("train_csv", "val_csv", "label_map"):
                self._require(name, bool(getattr(self, name)),
                              "needs a file, relative to data.root")
        from avapipe.data.ava import BadRowPolicy

        self._choice("on_bad_row", typing.get_args(BadRowPolicy))
        self._choice("on_missing_video",
                     registry_names("avapipe.data.keyframes", "MISSING_VIDEO_POLICIES"))


@dataclass(frozen=True)
class SyntheticParams(Section):
    SECTION: ClassVar[str] = "synthetic"
    seed: int = 0
    train_videos: int = 28
    val_videos: int = 12
    seconds: int = 30
    fps: int = 12
    width: int = 160
    height: int = 120

    def __post_init__(self) -> None:
        self._at_least(0, "seed")
        self._at_least(1, "train_videos", "val_videos", "fps")
        self._at_least(5, "seconds")  # 2-s margins around the keyframes
        self._at_least(32, "width", "height")
        for name in ("width", "height"):  # H.264 in yuv420p
            self._require(name, getattr(self, name) % 2 == 0, "must be even")
        # The widest scene (two figures 0.62 body heights from the borders,
        # reaching for each other) fits when width >= 1.2 × height.
        self._require("width", self.width >= 1.2 * self.height,
                      f"must be >= 1.2 × synthetic.height={self.height} for the figures to fit")


@dataclass(frozen=True)
class DetectParams(Section):
    SECTION: ClassVar[str] = "detect"
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

    def __post_init__(self) -> None:
        self._choice("source", DETECT_SOURCES)
        self._choice("train_source", DETECT_SOURCES + ("same",))
        self._choice("object_source", OBJECT_SOURCES)
        sources = {self.source, self.train_source, self.object_source}
        if "mmdet" in sources:
            for name in ("config", "checkpoint"):
                self._require(name, bool(getattr(self, name)), "a source is mmdet, which needs "
                              "detect.config and detect.checkpoint (a path or URL)")
        if "proposals" in sources:
            self._require("proposals", bool(self.proposals), "a source is proposals, which "
                          "needs an AVA proposals pickle or a detection CSV")
        self._fraction("score_thr", "object_score_thr")
        self._fraction("jitter", below_one=True)
        self._at_least(1, "batch_size", "object_topk")
        self._at_least(0, "seed")


@dataclass(frozen=True)
class PoseParams(Section):
    SECTION: ClassVar[str] = "pose"
    source: str = "gt"  # gt | mmpose
    config: str = ""
    checkpoint: str = ""
    batch_size: int = 16

    def __post_init__(self) -> None:
        self._choice("source", POSE_SOURCES)
        if self.source == "mmpose":
            for name in ("config", "checkpoint"):
                self._require(name, bool(getattr(self, name)), "pose.source=mmpose needs "
                              "pose.config and pose.checkpoint (a path or URL)")
        self._at_least(1, "batch_size")


@dataclass(frozen=True)
class PartsParams(Section):
    SECTION: ClassVar[str] = "parts"
    min_score: float = 0.3

    def __post_init__(self) -> None:
        self._fraction("min_score")


@dataclass(frozen=True)
class BackboneParams(Section):
    """The SlowFast network and its input clip, shared by pretrain and features."""

    SECTION: ClassVar[str] = "backbone"
    checkpoint: str = ""  # pytorchvideo SlowFast checkpoint (path or URL); "" → pretrain
    depth: int = 50
    alpha: int = 4
    beta_inv: int = 8
    width_divisor: int = 4  # 1 = standard widths; 4 = the CPU demo's narrow network
    num_frames: int = 16  # fast-pathway frames
    stride: int = 5  # in frames at ``fps``
    short_side: int = 96
    fps: float = 30.0  # clips are sampled at this rate whatever the video's; span = num_frames * stride / fps

    def __post_init__(self) -> None:
        self._choice("depth", (18, 50, 101, 152))
        self._at_least(1, "alpha", "beta_inv", "width_divisor", "stride")
        multiple = self.num_frames >= self.alpha and self.num_frames % self.alpha == 0
        self._require("num_frames", multiple,
                      f"must be a positive multiple of backbone.alpha={self.alpha}")
        slow = 64 // self.width_divisor
        self._require("width_divisor", 64 % self.width_divisor == 0 and slow % self.beta_inv == 0
                      and slow >= self.beta_inv, "64 / width_divisor must be a whole multiple of "
                      f"backbone.beta_inv={self.beta_inv}")
        self._at_least(16, "short_side")
        self._require("fps", self.fps > 0, "must be > 0")


@dataclass(frozen=True)
class PretrainParams(Section):
    SECTION: ClassVar[str] = "pretrain"
    level: str = "person"  # clip (Kinetics-like: one target per clip) | person (AVA-like: per RoI-pooled box)
    groups: tuple[str, ...] = ("pose",)  # class groups used as targets; [] = every class
    epochs: int = 2
    lr: float = 0.001
    batch_size: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        self._at_least(1, "epochs", "batch_size")
        self._require("lr", self.lr > 0, "must be > 0")
        self._at_least(0, "seed")
        self._choice("level", PRETRAIN_LEVELS)


@dataclass(frozen=True)
class FeaturesParams(Section):
    SECTION: ClassVar[str] = "features"
    dtype: str = "float16"  # float16 | float32
    batch_size: int = 4
    num_workers: int = 1
    jitter_copies: int = 0  # extra jittered copies of train boxes (box augmentation)
    jitter: float = 0.05
    enlarge: tuple[float, ...] = (0.0, 0.0)  # (x, y) growth of person boxes for pooling only
    seed: int = 0  # of the jittered copies

    def __post_init__(self) -> None:
        self._choice("dtype", registry_names("avapipe.features.store", "DTYPES"))
        self._at_least(1, "batch_size")
        self._at_least(0, "num_workers", "jitter_copies", "seed")
        self._fraction("jitter", below_one=True)
        self._require("enlarge", len(self.enlarge) == 2 and min(self.enlarge) >= 0,
                      "must be two numbers >= 0, the (x, y) growth of person boxes for "
                      "pooling, e.g. [0.1, 0.05]")


@dataclass(frozen=True)
class MemoryParams(Section):
    SECTION: ClassVar[str] = "memory"
    span: int = 30  # L: seconds each side of the keyframe
    per_second: int = 5  # K: persons kept per second

    def __post_init__(self) -> None:
        self._at_least(0, "span")
        self._at_least(1, "per_second")


@dataclass(frozen=True)
class TrainParams(Section):
    SECTION: ClassVar[str] = "train"
    checkpoint: str = ""  # a trained classifier to use instead of training (e.g. for data.source=videos)
    hidden: int = 256  # interaction-block width (AlphAction: 1024)
    fc_width: int = 1024  # the two fully connected layers before each classifier (AlphAction: 1024)
    padding: str = "mask"  # mask (padded slots out of the softmax) | attend (AlphAction: fixed-size zero padding)
    attend_self: bool = False  # the person block has the query person among its keys (AlphAction: true)
    part_pooling: str = "concat"  # Pose-Part's ten parts: concat (keeps which part is which) | mean
    memory_reader: str = "attention"  # the memory block: attention (AlphAction) | spans (per-span mean / max)
    epochs: int = 24
    lr: float = 0.0005
    batch_size: int = 16
    dropout: float = 0.2
    gamma: float = 2.0  # focal-loss gamma (AlphAction: 2); 0 = plain softmax CE / sigmoid BCE
    optimizer: str = "adamw"  # adamw | sgd

    def __post_init__(self) -> None:
        self._at_least(1, "hidden", "epochs", "batch_size")
        self._require("lr", self.lr > 0, "must be > 0")
        self._fraction("dropout", below_one=True)
        self._at_least(0, "gamma")
        self._choice("optimizer", OPTIMIZER_NAMES)
        self._choice("padding", PADDING_NAMES)
        self._choice("part_pooling", PART_POOLING_NAMES)
        self._choice("memory_reader", MEMORY_READER_NAMES)


@dataclass(frozen=True)
class EvaluateParams(Section):
    SECTION: ClassVar[str] = "evaluate"
    top_k: int = 50  # result rows per keyframe, as the official reader keeps them; 0 = all

    def __post_init__(self) -> None:
        self._require("top_k", self.top_k >= 0, "use the number of result rows per keyframe "
                      "(50 as the challenge), or 0 for all")


@dataclass(frozen=True)
class Params(Section):
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

    def __post_init__(self) -> None:
        self._at_least(0, "seed")
        self._choice("fusion", FUSION_NAMES)
        self._choice("device", DEVICES)


def load_params(path: Path = PARAMS_FILE) -> Params:
    """Reads and checks ``path``; every section and key is optional."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as err:
        raise ParamsError(f"{path}: not found; run from the project root") from err
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    return build_section(Params, raw, where=str(path))
