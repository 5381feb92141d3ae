"""Finding OpenMMLab configs and loading OpenMMLab checkpoints safely.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``: only
tensors, containers and an allowlist of classes may be unpickled, so a
checkpoint cannot run code. OpenMMLab checkpoints pickle a few more classes
(mmengine's ``MessageHub`` state holds ``HistoryBuffer`` objects of numpy
arrays and numpy scalars), so mmengine 0.10's plain ``torch.load`` refuses
them. Rather than turning the check off, ``trusted_openmmlab_checkpoints``
allowlists exactly those classes for the duration of a ``with`` block;
anything else a file tries to import (``os.system``, ``builtins.eval``...)
is still refused.

mmengine's own URL loader calls ``torch.load(weights_only=False)``; here a
URL is downloaded first and then loaded through the same restricted path.
"""

from __future__ import annotations

import collections
import difflib
import importlib.util
import os
import pickle
import re
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch

SHIPPED_CONFIGS = Path(__file__).parent / "configs"


class ConfigNotFoundError(ValueError):
    """A config is neither a file nor the name of a shipped config."""


class UnsafeCheckpointError(ValueError):
    """A checkpoint pickles globals outside the OpenMMLab allowlist."""


class CheckpointMismatchError(ValueError):
    """A checkpoint's weights do not fit the model its config builds."""


def openmmlab_checkpoint_globals() -> list:
    """The globals that OpenMMLab checkpoints pickle besides tensors and
    containers (found by saving checkpoints with mmengine's Runner and
    listing ``torch.serialization.get_unsafe_globals_in_checkpoint``).

    Checkpoints written under numpy 1 name numpy's internals ``numpy.core``,
    under numpy 2 ``numpy._core``; both spellings map to the same function.
    ``builtins.getattr`` maps to ``history_buffer_method``, not to getattr.
    """
    from mmengine.logging.history_buffer import HistoryBuffer

    reconstruct = np._core.multiarray._reconstruct
    scalar = np._core.multiarray.scalar
    dtype_classes = [type(np.dtype(c)) for c in "?bBhHiIlLqQefdgFDGSUV"]
    return [
        HistoryBuffer,
        collections.Counter,  # MultiStepLR's milestones
        np.ndarray,
        np.dtype,
        *dtype_classes,
        (reconstruct, "numpy._core.multiarray._reconstruct"),
        (reconstruct, "numpy.core.multiarray._reconstruct"),
        (scalar, "numpy._core.multiarray.scalar"),
        (scalar, "numpy.core.multiarray.scalar"),
        (history_buffer_method, "builtins.getattr"),
    ]


def history_buffer_method(owner: type, name: str):
    """What the pickled ``getattr(HistoryBuffer, "mean")`` calls in a
    checkpoint may do: look up one of HistoryBuffer's statistics methods
    (pickle protocol 2 stores a method as getattr on its class). Any other
    owner or name is refused, so a file cannot reach arbitrary attributes."""
    from mmengine.logging.history_buffer import HistoryBuffer

    if owner is HistoryBuffer and name in _HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f"refused getattr({getattr(owner, '__name__', type(owner).__name__)}, {name!r}): "
        "OpenMMLab checkpoints only look up HistoryBuffer's statistics methods"
    )


_HISTORY_BUFFER_STATISTICS = ("min", "max", "current", "mean")


@contextmanager
def trusted_openmmlab_checkpoints():
    """Within this block, ``torch.load(weights_only=True)`` (the default, and
    what mmengine's ``load_checkpoint`` / ``init_detector`` / ``init_model``
    end up calling for local files) also accepts the classes that OpenMMLab
    checkpoints pickle, and nothing else."""
    with torch.serialization.safe_globals(openmmlab_checkpoint_globals()):
        yield


def local_checkpoint_path(checkpoint: str | os.PathLike) -> str:
    """A local file for ``checkpoint``: a path, or an http(s) URL downloaded
    once into torch's hub cache (``$TORCH_HOME/hub/checkpoints``, where
    mmengine caches the same URLs)."""
    text = str(checkpoint)
    scheme = urlparse(text).scheme
    if scheme in ("http", "https"):
        target = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(text).path).name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(text, str(target), progress=True)
        return str(target)
    if re.match(r"^[a-z][a-z0-9+.-]+://", text):
        raise ValueError(
            f"checkpoint {text!r}: scheme {scheme!r} is not supported; pass a local "
            "path or an http(s) URL"
        )
    path = Path(text).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {text!r} not found; pass a local file or an http(s) URL")
    return str(path)


def load_trusted_checkpoint(checkpoint: str | os.PathLike) -> dict:
    """Loads an OpenMMLab checkpoint (path or URL) to CPU with
    ``weights_only=True`` and the OpenMMLab allowlist. Raises
    UnsafeCheckpointError naming the file and the refused globals."""
    path = local_checkpoint_path(checkpoint)
    with trusted_openmmlab_checkpoints():
        try:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            unsafe = _unsafe_globals(path)
            reason = (f"it pickles {unsafe}, which OpenMMLab checkpoints do not" if unsafe
                      else _unpickler_reason(str(err)))
            raise UnsafeCheckpointError(
                f"checkpoint {str(checkpoint)!r} was refused: {reason}. Loading it could run "
                "arbitrary code. Only if you trust its origin, load it with "
                "torch.load(weights_only=False), save its 'state_dict' with torch.save and "
                "pass that file."
            ) from err
    if not isinstance(loaded, dict):
        raise CheckpointMismatchError(
            f"checkpoint {str(checkpoint)!r} holds a {type(loaded).__name__}, not a dict "
            "of weights (state_dict) or an OpenMMLab checkpoint"
        )
    return loaded


def _unpickler_reason(message: str) -> str:
    """What torch's weights-only error says was refused (its text after
    "WeightsUnpickler error:"), without the advice around it."""
    _, _, detail = message.partition("WeightsUnpickler error:")
    lines = [line.strip() for line in (detail or message).splitlines() if line.strip()]
    return lines[0] if lines else message


def _unsafe_globals(path: str) -> list[str]:
    try:
        return torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # legacy (non-zip) files cannot be listed statically
        return []


def load_weights(model: torch.nn.Module, state: dict, *, config: str, source: str) -> None:
    """Copies ``state['state_dict']`` (or ``state`` itself, a bare state dict)
    of a loaded checkpoint into ``model``.

    The model's own load hooks run first, as in mmengine's ``load_checkpoint``
    (``init_detector`` / ``init_model``): mmpose 1.x renames an mmpose 0.x
    checkpoint's ``keypoint_head.*`` to ``head.*`` there, told by the state
    dict's ``_metadata`` (module versions) which layout it sees. The keys are
    judged after those hooks: unlike mmengine, which only logs them, any
    missing key (except BatchNorm's ``num_batches_tracked``), unexpected key or
    shape mismatch raises CheckpointMismatchError naming ``config`` and ``source``.
    """
    weights = state.get("state_dict", state)
    metadata = getattr(weights, "_metadata", None)
    weights = collections.OrderedDict((re.sub(r"^module\.", "", k), v) for k, v in weights.items())
    if metadata is not None:
        weights._metadata = metadata
    found: dict[str, list] = {}

    def keep_lists(module, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
        # torch fills these lists while it loads, after every module's own hooks
        found.update(missing=missing, unexpected=unexpected, errors=errors)

    handle = model.register_load_state_dict_pre_hook(keep_lists)
    try:
        model.load_state_dict(weights, strict=False)
    except RuntimeError:  # shape mismatches, read from the lists below
        if not found:
            raise
    finally:
        handle.remove()
    _raise_on_problems(found, config=config, source=source)


_SIZE_MISMATCH = re.compile(
    r"size mismatch for (\S+): copying a param with shape torch\.Size\(\[([^\]]*)\]\) from "
    r"checkpoint, the shape in current model is torch\.Size\(\[([^\]]*)\]\)")


def _shape(text: str) -> tuple[int, ...]:
    """``(4, 3)`` from torch's ``4, 3``."""
    return tuple(int(n) for n in text.split(",") if n.strip())


def _raise_on_problems(found: dict[str, list], *, config: str, source: str) -> None:
    missing = [k for k in found["missing"] if "num_batches_tracked" not in k]
    wrong_shape = []
    for message in found["errors"]:
        match = _SIZE_MISMATCH.search(message)
        wrong_shape.append(f"{match[1]} {_shape(match[2])} vs {_shape(match[3])}" if match else message)
    problems = [
        f"{len(keys)} {what} (first: {', '.join(keys[:3])})"
        for what, keys in (("missing keys", missing), ("unexpected keys", found["unexpected"]),
                           ("shape mismatches (checkpoint vs model)", wrong_shape))
        if keys
    ]
    if problems:
        raise CheckpointMismatchError(
            f"checkpoint {source!r} does not match the model of config {config!r}: "
            + "; ".join(problems)
            + ". Pass the config the checkpoint was trained with."
        )


def resolve_config(config: str | os.PathLike, *, package: str) -> str:
    """A config file path for ``config``: an existing file, or a config name
    (file stem) shipped with avapipe (``pipeline/configs``) or with ``package``
    (``<package>/.mim/configs/**``), e.g. ``faster-rcnn_r50_fpn_1x_coco``."""
    path = Path(config).expanduser()
    if path.is_file():
        return str(path)
    name = path.name.removesuffix(".py")
    roots = [SHIPPED_CONFIGS, *_package_config_dirs(package)]
    for root in roots:
        found = sorted(root.rglob(f"{name}.py")) if root.is_dir() else []
        found = [f for f in found if "_base_" not in f.parts]
        if len(found) > 1:
            raise ConfigNotFoundError(
                f"config name {name!r} is ambiguous: {[str(f) for f in found]}; pass a path"
            )
        if found:
            return str(found[0])
    raise ConfigNotFoundError(_config_not_found_message(str(config), name, roots))


def _package_config_dirs(package: str) -> list[Path]:
    """``<package>/.mim/configs`` of an installed OpenMMLab package (found
    without importing it), or nothing."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(list(spec.submodule_search_locations)[0]) / ".mim" / "configs"]


def _config_not_found_message(config: str, name: str, roots: list[Path]) -> str:
    names = sorted({f.stem for root in roots if root.is_dir() for f in root.rglob("*.py")
                    if "_base_" not in f.parts})
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    hint = f" Close names: {close}." if close else ""
    return (
        f"config {config!r} is neither a file nor a known config name.{hint} Valid names "
        "are the file stems of the .py files under "
        + " and ".join(str(r) for r in roots)
        + " (e.g. list them with: find <dir> -name '*.py'); or pass a config file path."
    )
