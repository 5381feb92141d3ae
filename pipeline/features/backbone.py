"""SlowFast backbone and AlphAction's RoI feature recipe.

The network is pytorchvideo's ``create_slowfast`` with the last stage (res5)
dilated as in AlphAction: spatial stride 1 and dilation 2 there, so res4 and
res5 both sit at 1/16 of the input and a 7×7 RoIAlign still sees detail of
small boxes. The parameter names of the network are those of pytorchvideo's
``slowfast_r50`` (and, after stripping ``model.``, ``slowfast_r50_detection``),
so their checkpoints load unchanged; dilation changes no weight shape.

Recipe per box (AlphAction): per pathway temporal mean of the feature map,
slow and fast concatenated along channels, RoIAlign 7×7 at 1/16, spatial max.
Person and object boxes are pooled from res5, part boxes from res4. Person
boxes may be enlarged for pooling only (``enlarge_rois``), as AlphAction
enlarges them; the box itself stays what was detected.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pytorchvideo.models.slowfast import create_slowfast
from torch import Tensor, nn
from torchvision.ops import roi_align

FEATURE_STRIDE = 16
ROI_SIZE = 7
# Kinetics normalisation of pytorchvideo's SlowFast models, on [0, 1] pixels.
PIXEL_MEAN = (0.45, 0.45, 0.45)
PIXEL_STD = (0.225, 0.225, 0.225)
BACKBONE_BLOCKS = 5  # stem, res2, res3, res4, res5; later blocks are the head
# Temporal kernel of the fast→slow fusion convolutions (pytorchvideo's hub).
_FUSION_KERNEL = {18: 7, 50: 7, 101: 5, 152: 5}


@dataclass(frozen=True)
class ClipSpec:
    """How the clip around a keyframe is sampled and fed to SlowFast.

    num_frames: frames of the fast pathway, centred on the keyframe.
    stride: step between sampled frames, in frames at ``fps``.
    alpha: the slow pathway sees every alpha-th of those frames.
    short_side: frames are resized so their short side has this many pixels.
    fps: the rate the clip is sampled at, whatever the video's own rate
        (pretrained SlowFast checkpoints assume 30); the clip spans
        ``num_frames * stride / fps`` seconds.
    """

    num_frames: int = 32
    stride: int = 2
    alpha: int = 4
    short_side: int = 256
    fps: float = 30.0

    @property
    def span_sec(self) -> float:
        return self.num_frames * self.stride / self.fps

    def __post_init__(self) -> None:
        if self.num_frames < self.alpha or self.num_frames % self.alpha:
            raise ValueError(
                f"clip num_frames={self.num_frames} must be a positive multiple of "
                f"alpha={self.alpha} (the slow pathway takes every alpha-th frame)"
            )
        if self.stride < 1 or self.short_side < 16 or not self.fps > 0:
            raise ValueError(
                f"clip stride={self.stride} must be >= 1, short_side="
                f"{self.short_side} >= 16 and fps={self.fps} > 0"
            )


def build_slowfast(
    *,
    depth: int = 50,
    alpha: int = 4,
    beta_inv: int = 8,
    width_divisor: int = 1,
    num_classes: int = 400,
    dropout: float = 0.5,
) -> nn.Module:
    """A pytorchvideo SlowFast ``Net`` with a global-average classification head.

    depth: 18, 50, 101 or 152. alpha: frame-rate ratio fast/slow (the fusion
    convolutions stride by it). beta_inv: channel ratio slow/fast.
    width_divisor: divides every width (4 gives ``stem_dim_outs=(16, 2)``, the
    CPU demo's network). num_classes: outputs of the head (only pretraining
    uses the head; features never do).
    """
    if depth not in _FUSION_KERNEL:
        raise ValueError(f"SlowFast depth {depth} unknown; use one of {sorted(_FUSION_KERNEL)}")
    slow_width = 64 // width_divisor
    if slow_width < beta_inv or 64 % width_divisor or slow_width % beta_inv:
        raise ValueError(
            f"width_divisor={width_divisor} with beta_inv={beta_inv} leaves no whole "
            "fast pathway width; 64 / width_divisor must be a multiple of beta_inv"
        )
    dilations = ((1, 1, 1),) * 3 + ((1, 2, 2),)
    return create_slowfast(
        slowfast_channel_reduction_ratio=(beta_inv,),
        slowfast_fusion_conv_kernel_size=(_FUSION_KERNEL[depth], 1, 1),
        slowfast_fusion_conv_stride=(alpha, 1, 1),
        model_depth=depth,
        model_num_class=num_classes,
        dropout_rate=dropout,
        stem_dim_outs=(slow_width, slow_width // beta_inv),
        stage_conv_b_dilations=(dilations, dilations),
        stage_spatial_strides=((1, 2, 2, 1),) * 2,  # res5: stride 1, dilation 2
        head_pool=nn.AdaptiveAvgPool3d,
        head_output_size=(1, 1, 1),
    )


@dataclass(frozen=True)
class FeatureMaps:
    """Per pathway (slow, fast) feature maps of one batch, each [B, C_p, T_p, h, w]."""

    res4: tuple[Tensor, Tensor]
    res5: tuple[Tensor, Tensor]


class FeatureExtractor(nn.Module):
    """The backbone part (blocks 0-4) of a ``build_slowfast`` model.

    ``forward(slow, fast)`` gives the res4 maps before the last fast→slow
    fusion and the res5 maps. ``person_channels`` (C, 2304 for the standard
    R50) and ``part_channels`` (Cp, 1152) are the widths of the pooled vectors.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(list(net.blocks)[:BACKBONE_BLOCKS])
        slow_width, fast_width = (stem.conv.out_channels for stem in self.blocks[0].multipathway_blocks)
        self.part_channels = 16 * (slow_width + fast_width)
        self.person_channels = 32 * (slow_width + fast_width)

    def forward(self, slow: Tensor, fast: Tensor) -> FeatureMaps:
        """slow: [B, 3, T/alpha, H, W], fast: [B, 3, T, H, W], normalized."""
        x = [slow, fast]
        for block in self.blocks[:3]:
            x = block(x)
        res4_block, res5_block = self.blocks[3], self.blocks[4]
        res4 = [path(t) for path, t in zip(res4_block.multipathway_blocks, x)]
        x = res4_block.multipathway_fusion(list(res4))
        res5 = [path(t) for path, t in zip(res5_block.multipathway_blocks, x)]
        return FeatureMaps(res4=(res4[0], res4[1]), res5=(res5[0], res5[1]))


def clips_to_pathways(clips: Tensor, *, alpha: int) -> tuple[Tensor, Tensor]:
    """clips: uint8 [B, T, H, W, 3] RGB → normalized (slow [B,3,T/alpha,H,W], fast [B,3,T,H,W]).

    The slow pathway takes T/alpha frames spread evenly over the clip, as
    pytorchvideo's and SlowFast's own pipelines do.
    """
    if clips.dtype != torch.uint8 or clips.ndim != 5 or clips.shape[-1] != 3:
        raise ValueError(
            f"clips must be uint8 [B, T, H, W, 3]; got {clips.dtype} {tuple(clips.shape)}"
        )
    mean = torch.tensor(PIXEL_MEAN, device=clips.device).view(1, 3, 1, 1, 1)
    std = torch.tensor(PIXEL_STD, device=clips.device).view(1, 3, 1, 1, 1)
    # Channel-first copy while still uint8, then one in-place scale and shift:
    # several times faster than arithmetic on the permuted float view.
    fast = clips.permute(0, 4, 1, 2, 3).contiguous().float()
    fast.mul_(1.0 / (255.0 * std)).sub_(mean / std)
    frames = fast.shape[2]
    slow_index = torch.linspace(0, frames - 1, frames // alpha, device=clips.device).long()
    return fast.index_select(2, slow_index), fast


def boxes_to_rois(boxes: Tensor, clip_index: Tensor, *, height: int, width: int) -> Tensor:
    """Normalized xyxy boxes [K, 4] of clips ``clip_index`` [K] → RoIs [K, 5] in input pixels."""
    scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=boxes.device)
    pixels = boxes.to(torch.float32) * scale
    return torch.cat([clip_index.to(pixels).view(-1, 1), pixels], dim=1)


def enlarge_rois(rois: Tensor, *, enlarge: tuple[float, float], height: int, width: int) -> Tensor:
    """RoIs [K, 5] (clip index, x1, y1, x2, y2 in input pixels) enlarged as
    AlphAction enlarges person boxes before pooling (``BoxList.extend``):
    each side moves out by ``enlarge[0] * (w + 1) / 2`` (x) and
    ``enlarge[1] * (h + 1) / 2`` (y), then the box is clipped to
    ``[0, width - 1] x [0, height - 1]``. AlphAction's default is (0.1, 0.05).
    ``(0, 0)`` returns ``rois`` unchanged (no enlargement, no clipping).
    """
    fx, fy = (float(f) for f in enlarge)
    if fx < 0 or fy < 0:
        raise ValueError(f"enlarge must be two numbers >= 0 (got {enlarge!r})")
    if fx == 0 and fy == 0:
        return rois
    x1, y1, x2, y2 = rois[:, 1], rois[:, 2], rois[:, 3], rois[:, 4]
    # AlphAction's boxes count pixels inclusively: a box is x2 - x1 + 1 wide.
    pad_x, pad_y = fx * (x2 - x1 + 1) / 2, fy * (y2 - y1 + 1) / 2
    return torch.stack([
        rois[:, 0],
        (x1 - pad_x).clamp(0, width - 1), (y1 - pad_y).clamp(0, height - 1),
        (x2 + pad_x).clamp(0, width - 1), (y2 + pad_y).clamp(0, height - 1),
    ], dim=1)


def pool_rois(maps: tuple[Tensor, Tensor], rois: Tensor) -> Tensor:
    """AlphAction pooling: temporal mean per pathway, concat, RoIAlign 7×7, spatial max.

    maps: (slow [B, Cs, Ts, h, w], fast [B, Cf, Tf, h, w]); rois: [K, 5] as
    ``boxes_to_rois`` gives. Returns [K, Cs + Cf].
    """
    joined = torch.cat([m.mean(dim=2) for m in maps], dim=1)
    if rois.shape[0] == 0:
        return joined.new_zeros((0, joined.shape[1]))
    pooled = roi_align(
        joined, rois.to(joined), output_size=ROI_SIZE,
        spatial_scale=1.0 / FEATURE_STRIDE, sampling_ratio=0, aligned=True,
    )
    return pooled.amax(dim=(2, 3))
