"""The AVA proposals pickle, read without running pickled code.

The person proposals AVA users share (e.g. ``ava_dense_proposals_val.FAIR.
recall_93.9.pkl``) map ``"video_id,0902"`` to a float array (N, 5)
``[x1, y1, x2, y2, score]`` (or (N, 4)) of normalized boxes. A pickle can run
any code when loaded; this reader allows only what a dict of numpy arrays
needs.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from avapipe.data.ava import AvaFormatError


# Everything a pickled numpy float array needs, and nothing that runs other code.
_NUMPY_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    ("builtins", "bytes"), ("__builtin__", "bytes"),
    *((f"numpy.{core}.multiarray", name) for core in ("core", "_core")
      for name in ("_reconstruct", "scalar")),
    *((f"numpy.{core}.numeric", "_frombuffer") for core in ("core", "_core")),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _NUMPY_GLOBALS:
            raise AvaFormatError(
                f"{self.source}: the pickle asks for {module}.{name}; a proposals "
                "pickle may hold only a dict of numpy arrays, so it is not loaded")
        if module.startswith("numpy.core."):  # numpy 1 pickles name numpy.core
            module = "numpy._core." + module.removeprefix("numpy.core.")
        return super().find_class(module, name)


def read_proposals(path: str | Path) -> dict[tuple[str, int], np.ndarray]:
    """Reads an AVA proposals pickle without running pickled code.

    The file holds ``{"video_id,0902": float array (N, 5) [x1, y1, x2, y2, score]
    or (N, 4)}``, normalized boxes. Returns ``{(video_id, timestamp): float64
    array}`` with the columns as stored.
    """
    with open(path, "rb") as f:
        unpickler = _NumpyOnlyUnpickler(f, encoding="latin1")
        unpickler.source = path
        content = unpickler.load()
    if not isinstance(content, dict):
        raise AvaFormatError(f"{path}: holds {type(content).__name__}, not a dict "
                             "{'video_id,0902': array}")
    return {_proposal_key(path, k): _proposal_boxes(path, k, v) for k, v in content.items()}


def _proposal_key(path, key) -> tuple[str, int]:
    video_id, _, seconds = str(key).rpartition(",")
    if not video_id or not seconds.isdigit():
        raise AvaFormatError(f"{path}: key {key!r} is not 'video_id,timestamp' "
                             "(e.g. '0f39OWEqJ24,0902')")
    return video_id, int(seconds)


def _proposal_boxes(path, key, value) -> np.ndarray:
    boxes = np.asarray(value)
    if boxes.ndim != 2 or boxes.shape[1] not in (4, 5) or boxes.dtype.kind not in "fiu":
        raise AvaFormatError(f"{path}: key {key!r} holds {boxes.dtype} {boxes.shape}; "
                             "expected a float array (N, 5) [x1,y1,x2,y2,score] or (N, 4)")
    boxes = boxes.astype(np.float64)
    if not np.isfinite(boxes).all():
        raise AvaFormatError(f"{path}: key {key!r} holds NaN or infinite values")
    return boxes
