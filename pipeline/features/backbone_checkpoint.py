"""Reading SlowFast checkpoints into avapipe's backbone, whatever code wrote them.

avapipe's backbone is pytorchvideo's ``create_slowfast`` (names
``blocks.N.…``; the hub's ``slowfast_r50_detection`` adds ``model.``).
PySlowFast (facebookresearch/SlowFast) saves the same network under other
names (``model_state`` with ``s1.pathway0_stem.conv.weight``,
``s2.pathway0_res0.branch2.a_bn.weight``, ``s1_fuse.conv_f2s.weight``…): the
same layers with the same shapes, so its backbone weights are renamed one to
one. Checked against PySlowFast's own model: its res5 maps and those of the
renamed weights in this backbone are identical
(``tests/data/pyslowfast_slowfast_r50_w16.npz``). Other layouts are refused
naming the convention found.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import Tensor, nn

from avapipe.features.backbone import BACKBONE_BLOCKS


class CheckpointError(ValueError):
    """A checkpoint does not fit the backbone it is loaded into."""


_STEM = {"conv": "conv", "bn": "norm"}
_FUSE = {"conv_f2s": "conv_fast_to_slow", "bn": "norm"}


def _res_layer(name: str) -> str:
    """branch1 → branch1_conv, branch1_bn → branch1_norm, branch2.a → branch2.conv_a,
    branch2.a_bn → branch2.norm_a."""
    if name.startswith("branch1"):
        return "branch1_norm" if name.endswith("_bn") else "branch1_conv"
    letter = name[len("branch2."):][0]
    return f"branch2.norm_{letter}" if name.endswith("_bn") else f"branch2.conv_{letter}"


# PySlowFast name → pytorchvideo name; PySlowFast's stage sK is block K-1.
_PYSLOWFAST_RULES = (
    (r"^s1\.pathway(\d)_stem\.(conv|bn)\.(\w+)$",
     lambda p, layer, rest: f"blocks.0.multipathway_blocks.{p}.{_STEM[layer]}.{rest}"),
    (r"^s(\d)_fuse\.(conv_f2s|bn)\.(\w+)$",
     lambda s, layer, rest: f"blocks.{int(s) - 1}.multipathway_fusion.{_FUSE[layer]}.{rest}"),
    (r"^s(\d)\.pathway(\d)_res(\d+)\.(branch1|branch1_bn|branch2\.[abc]|branch2\.[abc]_bn)\.(\w+)$",
     lambda s, p, i, layer, rest:
         f"blocks.{int(s) - 1}.multipathway_blocks.{p}.res_blocks.{i}.{_res_layer(layer)}.{rest}"),
)

# Convention → (a key that marks it, what to tell the user).
CONVENTIONS = {
    "pytorchvideo": (r"^(model\.)?blocks\.\d+\.", "pytorchvideo's names (blocks.N.…)"),
    "pyslowfast": (r"^s1\.pathway0_stem\.",
                   "PySlowFast's names (model_state with s1.pathway0_stem.conv.weight, …)"),
    "mmaction2": (r"^(backbone\.)?(slow|fast)_path\.",
                  "mmaction2's ResNet3dSlowFast names (backbone.slow_path.conv1.conv.weight, …)"),
}


def checkpoint_convention(keys) -> str:
    """The convention (a key of CONVENTIONS) whose names ``keys`` use, or 'unknown'."""
    keys = list(keys)
    for name, (pattern, _) in CONVENTIONS.items():
        if any(re.match(pattern, k) for k in keys):
            return name
    return "unknown"


def _renamed(key: str) -> str | None:
    for pattern, rename in _PYSLOWFAST_RULES:
        match = re.match(pattern, key)
        if match:
            return rename(*match.groups())
    return None


def from_pyslowfast(state: dict) -> tuple[dict, list[str]]:
    """PySlowFast weights under pytorchvideo's names.

    Returns (renamed backbone weights, PySlowFast keys left out: its head,
    which avapipe's features never use)."""
    renamed, left = {}, []
    for key, value in state.items():
        new = _renamed(key)
        if new is None:
            left.append(key)
        else:
            renamed[new] = value
    return renamed, left


def describe(keys) -> str:
    """What the keys look like, for an error message: the convention and two keys."""
    keys = sorted(keys)
    found = CONVENTIONS.get(checkpoint_convention(keys), (None, "names of no known convention"))[1]
    return f"{found}, e.g. {keys[:2]}"


def read_checkpoint(source: str | Path) -> dict[str, Tensor]:
    """The state dict in a pytorchvideo-style checkpoint (a path or an URL).

    Accepts ``{"model_state": …}`` (pytorchvideo, SlowFast, this project's
    pretraining), ``{"state_dict": …}`` or a bare state dict. Loaded with
    ``weights_only=True``: a checkpoint holding pickled objects is refused.
    """
    text = str(source)
    if text.startswith(("http://", "https://")):
        ckpt = torch.hub.load_state_dict_from_url(text, map_location="cpu", weights_only=True)
    else:
        if not Path(text).is_file():
            raise FileNotFoundError(f"{text}: backbone checkpoint not found")
        ckpt = torch.load(text, map_location="cpu", weights_only=True)
    for key in ("model_state", "state_dict"):
        if isinstance(ckpt, dict) and isinstance(ckpt.get(key), dict):
            return ckpt[key]
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{text}: holds a {type(ckpt).__name__}, not a state dict")
    return ckpt


def load_backbone_checkpoint(model: nn.Module, source: str | Path) -> list[str]:
    """Loads the backbone weights of a checkpoint into a ``build_slowfast`` model.

    Every backbone parameter (blocks 0-4) must be present with the same shape;
    the head is loaded only when its shape fits (a Kinetics-400 head does not
    fit an 80-class one, and features never use it). ``model.`` prefixes
    (``slowfast_r50_detection``) are stripped; PySlowFast's names are renamed
    (see the module docstring); other conventions are refused, naming the one
    found. Returns the ignored keys.
    """
    state, convention, ignored = _pytorchvideo_names(read_checkpoint(source), source)
    own = model.state_dict()
    _check_backbone_keys(own, state, source, convention=convention)
    merged = dict(own)
    for key, value in state.items():
        if key in own and own[key].shape == value.shape:
            merged[key] = value
        else:
            ignored.append(key)
    model.load_state_dict(merged)
    return ignored


def _pytorchvideo_names(state: dict, source) -> tuple[dict, str, list[str]]:
    """(the state under pytorchvideo's names, the convention it came in, the
    keys that have no pytorchvideo name: PySlowFast's head)."""
    convention = checkpoint_convention(state)
    if convention == "pyslowfast":
        renamed, head = from_pyslowfast(state)
        return renamed, convention, head
    if convention not in ("pytorchvideo", "unknown"):
        raise CheckpointError(
            f"{source}: the checkpoint uses {CONVENTIONS[convention][1]}; avapipe's backbone is "
            "pytorchvideo's SlowFast and reads pytorchvideo or PySlowFast checkpoints. Use the "
            "same network's checkpoint from the pytorchvideo or PySlowFast model zoo")
    return {_strip_prefix(k): v for k, v in state.items()}, convention, []


def _strip_prefix(key: str) -> str:
    return key[len("model."):] if key.startswith("model.") else key


def _is_backbone_key(key: str) -> bool:
    parts = key.split(".")
    return parts[0] == "blocks" and parts[1].isdigit() and int(parts[1]) < BACKBONE_BLOCKS


def _check_backbone_keys(own: dict, state: dict, source, *, convention: str) -> None:
    own_keys = {k for k in own if _is_backbone_key(k)}
    their_keys = {k for k in state if _is_backbone_key(k)}
    hint = "check depth, beta_inv and width_divisor against the checkpoint's network"
    if convention == "unknown":
        raise CheckpointError(
            f"{source}: no SlowFast backbone weights found: the keys are {describe(state)}; "
            "expected pytorchvideo's (blocks.0.multipathway_blocks.0.conv.weight, …) or "
            "PySlowFast's (s1.pathway0_stem.conv.weight, …)")
    if convention == "pyslowfast":
        hint = f"the checkpoint uses {CONVENTIONS[convention][1]}, renamed to pytorchvideo's; {hint}"
    if own_keys != their_keys:
        missing, extra = sorted(own_keys - their_keys), sorted(their_keys - own_keys)
        raise CheckpointError(
            f"{source}: backbone keys differ from the model's: {len(missing)} missing "
            f"(e.g. {missing[:3]}), {len(extra)} unexpected (e.g. {extra[:3]}); {hint}"
        )
    for key in sorted(own_keys):
        if own[key].shape != state[key].shape:
            raise CheckpointError(
                f"{source}: {key} has shape {tuple(state[key].shape)} in the checkpoint "
                f"but {tuple(own[key].shape)} in the model; {hint}"
            )
