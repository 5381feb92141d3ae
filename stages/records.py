"""Which parameters each stage's outputs depend on, and the check of its inputs.

An output's record (``avapipe.provenance``) holds the stage's own sections
of params.yaml (``STAGE_PARAMS``, the ``params:`` lists of dvc.yaml) plus
the records of every input it read, so it names everything upstream that
shaped it. A stage refuses an input whose record disagrees with the
current params — a model trained with ``fusion: cube`` is not evaluated
under ``fusion: none`` — before it writes anything.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path

from avapipe.provenance import ProvenanceError, differences, read_record
from stages.params import Params, ParamsError

STAGE_PARAMS = {
    "prepare": ("data", "synthetic"),
    "detect": ("detect",),
    "pose": ("pose",),
    "parts": ("parts",),
    "pretrain": ("backbone", "pretrain"),
    "features": ("backbone", "features"),
    "memory": ("memory",),
    "train": ("seed", "fusion", "pose_part", "device", "train"),
    "evaluate": ("evaluate",),
}


class ParamsChangedError(ParamsError):
    """params.yaml changed while a stage ran."""


def current(params: Params, sections: Iterable[str]) -> dict:
    """{section: value} of ``params`` as JSON values (tuples become lists)."""
    values = {}
    for name in sections:
        value = getattr(params, name)
        values[name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    return json.loads(json.dumps(values))


def _describe(found: list[tuple[str, object, object]]) -> str:
    key, old, new = found[0]
    others = ", ".join(k for k, _, _ in found[1:4])
    more = f" (and {len(found) - 1} more: {others})" if len(found) > 1 else ""
    return f"{key}={old!r}, but params.yaml has {key}={new!r}{more}"


def checked_inputs(stage: str, params: Params, inputs: Iterable[Path]) -> dict:
    """The record of ``stage``'s outputs, after checking the record of every
    input against ``params``; raises ProvenanceError naming the first key
    that differs, both values, and the stage to re-run."""
    made_with = {}
    for path in inputs:
        record = read_record(path)
        if record is None:
            if Path(path).exists():
                print(f"{stage}: {path} carries no record of the params that made it "
                      "(written by an older avapipe or by hand); not checked")
            continue
        found = differences(record["params"], current(params, record["params"]))
        if found:
            maker = record.get("stage", "?")
            raise ProvenanceError(
                f"{path} was made by the {maker} stage with {_describe(found)}. Re-run it "
                f"(dvc repro, or avapipe extract {maker}) before the {stage} stage")
        made_with.update(record["params"])
    made_with.update(current(params, STAGE_PARAMS[stage]))
    return {"stage": stage, "params": dict(sorted(made_with.items()))}


def check_unchanged(stage: str, started: Params, now: Params) -> None:
    """Raises ParamsChangedError if the stage's own params differ between the
    params it started with and those params.yaml holds now."""
    found = differences(current(started, STAGE_PARAMS[stage]), current(now, STAGE_PARAMS[stage]))
    if found:
        key, old, new = found[0]
        raise ParamsChangedError(
            f"params.yaml changed while the {stage} stage ran: {key} was {old!r} when it "
            f"started and is {new!r} now. Its outputs were made with {key}={old!r} and say so in "
            "their record, so later stages refuse them under the new value; re-run the stage. "
            "If another `dvc exp run` changed params.yaml, run experiments one after another "
            "or queue them: dvc exp run --queue -S ..., then dvc queue start")
