"""AVA file formats: ground-truth / result CSVs, label map, excluded timestamps
(the proposals pickle: ``proposals.py``). Readers check every row and name
file and line (1-based).

CSV formats (no header, no quoting):

- ground truth: ``video_id,timestamp,x1,y1,x2,y2,action_id[,person_id]``, one
  row per (box, action): a box with three actions is three rows. A two-column
  row ``video_id,timestamp`` marks a keyframe with no boxes.
- results: ``video_id,timestamp,x1,y1,x2,y2,action_id,score`` (two-column rows
  allowed as above).
- excluded timestamps: ``video_id,timestamp``.

Boxes are normalized ``x1, y1, x2, y2`` in [0, 1], origin top-left; timestamps
are whole seconds, written zero-padded to four digits (``0902``) as AVA does.
Numbers are parsed as Python's ``float()`` parses them, as the official
evaluator does, so score ties and IoUs come out as they do there.

The official evaluator names a keyframe ``"%s,%.6f" % (video_id,
Decimal(timestamp))``: ``0902``, ``902`` and ``902.0`` are one keyframe, and a
fractional timestamp is legal. Readers given ``whole_seconds=False`` accept
such files and read each timestamp as the value of that key
(``keyframe_seconds``); the pipeline's own files keep whole seconds.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

BadRowPolicy = Literal["error", "skip"]
GT_COLUMNS = ("video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id", "person_id")
RESULT_COLUMNS = ("video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id", "score")
KEYFRAME_COLUMNS = ("video_id", "timestamp")
BOX_COLUMNS = ("x1", "y1", "x2", "y2")


class AvaFormatError(ValueError):
    """A file is not in the AVA format; the message names file, line and fix."""


@dataclass(frozen=True)
class AvaCsv:
    """A parsed ground-truth or result CSV.

    rows: one row per (box, action) in file order; GT_COLUMNS (``person_id`` -1
        where the file has none) or RESULT_COLUMNS. Dtypes: video_id str,
        timestamp / action_id / person_id int64, boxes and score float64.
    empty_keyframes: the two-column rows (keyframes with no boxes), in file order.
    skipped: bad rows left out under ``on_bad_row="skip"``, counted per reason.
    """

    rows: pd.DataFrame
    empty_keyframes: pd.DataFrame
    skipped: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Kind:
    name: str
    columns: tuple[str, ...]
    field_counts: frozenset[int]


_GT = _Kind("ground-truth", GT_COLUMNS, frozenset({2, 7, 8}))
_ROWS_PER_CHUNK = 500_000
_RESULTS = _Kind("result", RESULT_COLUMNS, frozenset({2, 8}))
_EXCLUSIONS = _Kind("excluded-timestamps", KEYFRAME_COLUMNS, frozenset({2}))

# reason -> (what is wrong, how to fix it), in the order rows are checked
_REASONS = {
    "columns": ("wrong number of columns", "rows have {counts} comma-separated fields"),
    "video_id": ("empty video id", "give the YouTube / movie id in column 1"),
    "timestamp": ("timestamp is not a whole number of seconds", "write e.g. 0902"),
    "seconds": ("timestamp is not a number of seconds", "write e.g. 0902 or 902.5"),
    "box": ("box is not normalized x1<=x2, y1<=y2 in [0, 1]",
            "write boxes as fractions of the frame size, top-left origin"),
    "action_id": ("action id is not an integer", "column 7 is the integer action id"),
    "unknown_action": ("action id is not in the label map",
                       "drop the row or use the label map the file was made for"),
    "score": ("score is not a finite number", "column 8 is the detection score"),
    "person_id": ("person id is not an integer", "column 8 is the integer person id"),
}


def read_groundtruth_csv(
    path: str | Path, *, label_ids: Collection[int] | None = None,
    on_bad_row: BadRowPolicy = "error", whole_seconds: bool = True,
) -> AvaCsv:
    """Reads an AVA ground-truth CSV (7 or 8 columns, or 2 for an empty keyframe).

    label_ids: if given, a row whose action id is not among them is bad.
    on_bad_row: ``error`` raises AvaFormatError at the first bad row;
        ``skip`` leaves bad rows out, logs a warning and counts them per reason.
    whole_seconds: a timestamp that is not a whole number is bad. With False,
        any number is read as ``keyframe_seconds`` gives it (int64 if all are
        whole, else float64), as the official evaluator reads evaluation files.
    """
    return _read_csv(Path(path), _GT, label_ids, on_bad_row, whole_seconds)


def read_results_csv(
    path: str | Path, *, label_ids: Collection[int] | None = None,
    on_bad_row: BadRowPolicy = "error", whole_seconds: bool = True,
) -> AvaCsv:
    """Reads an AVA result CSV (8 columns, or 2); arguments as read_groundtruth_csv."""
    return _read_csv(Path(path), _RESULTS, label_ids, on_bad_row, whole_seconds)


def read_excluded_timestamps(
    path: str | Path, *, on_bad_row: BadRowPolicy = "error", whole_seconds: bool = True,
) -> pd.DataFrame:
    """Reads an excluded-timestamps CSV → DataFrame ``video_id, timestamp``."""
    return _read_csv(Path(path), _EXCLUSIONS, None, on_bad_row, whole_seconds).empty_keyframes


def keyframe_seconds(timestamps) -> np.ndarray:
    """float64 seconds of each timestamp as the official evaluator keys it: the
    number ``"%.6f" % Decimal(text)`` writes (``%`` formats a Decimal through
    float, so this is ``"%.6f"`` of the parsed float). Two timestamps name the
    same keyframe iff their values here are equal."""
    values = np.asarray(timestamps, dtype=np.float64)
    unique, inverse = np.unique(values, return_inverse=True)
    return np.array([float("%.6f" % v) for v in unique], dtype=np.float64)[inverse]


def _read_csv(path: Path, kind: _Kind, label_ids, on_bad_row: str,
              whole_seconds: bool) -> AvaCsv:
    if on_bad_row not in ("error", "skip"):
        raise ValueError(f"on_bad_row={on_bad_row!r}; use 'error' or 'skip'")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {kind.name} CSV not found")
    data = path.read_bytes()
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    starts, ends, fields = _scan_lines(data)
    blank = ends == starts
    bad_count = ~blank & ~np.isin(fields, list(kind.field_counts))
    keep = ~blank & ~bad_count
    table = _parse_table(data, kind, np.flatnonzero(~keep))
    reasons = _bad_row_masks(table, fields[keep], kind, label_ids, whole_seconds)
    line_numbers = np.flatnonzero(keep) + 1
    bad_lines = {"columns": np.flatnonzero(bad_count) + 1}
    bad_lines |= {r: line_numbers[m] for r, m in reasons.items()}
    if on_bad_row == "error":
        _raise_first_bad(path, kind, data, starts, ends, bad_lines)
    skipped = {r: len(lines) for r, lines in bad_lines.items() if len(lines)}
    if skipped:
        log.warning("%s: skipped bad rows %s, first at lines %s", path, skipped,
                    {r: [int(x) for x in bad_lines[r][:3]] for r in skipped})
    good = ~np.logical_or.reduce(list(reasons.values()))
    return _split_rows(table[good], fields[keep][good], skipped, whole_seconds)


def _scan_lines(data: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start and end offsets and field count of each line, without parsing."""
    buf = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(buf == ord("\n"))
    if len(buf) and buf[-1] != ord("\n"):
        ends = np.append(ends, len(buf))
    starts = np.concatenate(([0], ends[:-1] + 1)).astype(np.int64)
    commas = np.zeros(len(starts), dtype=np.int64)
    if len(buf):
        commas = np.add.reduceat(buf == ord(","), starts, dtype=np.int64)
    return starts, ends, commas + 1


def _parse_table(data: bytes, kind: _Kind, skip_lines: np.ndarray) -> pd.DataFrame:
    numeric = list(kind.columns[1:])
    try:
        table = pd.read_csv(
            io.BytesIO(data), header=None, names=list(kind.columns),
            dtype={"video_id": str}, keep_default_na=False,
            na_values={c: [""] for c in numeric}, quoting=csv.QUOTE_NONE,
            skiprows=set(skip_lines.tolist()) or None, float_precision="round_trip",
        )
    except pd.errors.EmptyDataError:
        table = pd.DataFrame({c: pd.Series([], dtype=object) for c in kind.columns})
    for column in numeric:
        table[column] = _as_float(table[column])
    return table


def _as_float(column: pd.Series) -> np.ndarray:
    if column.dtype != object:
        return column.to_numpy(dtype=np.float64)

    def parse(value) -> float:  # as the official reader does, text junk → NaN
        try:
            return float(value)
        except (TypeError, ValueError):
            return np.nan

    return np.array([parse(v) for v in column], dtype=np.float64)


def _bad_row_masks(table: pd.DataFrame, fields: np.ndarray, kind: _Kind,
                   label_ids, whole_seconds: bool) -> dict[str, np.ndarray]:
    """One boolean mask per reason; a row counts under its first failing reason."""
    full = fields > 2
    masks = {
        "video_id": (table["video_id"].isna() | (table["video_id"] == "")).to_numpy()}
    if whole_seconds:
        masks["timestamp"] = ~_is_integer(table["timestamp"])
    else:
        masks["seconds"] = ~np.isfinite(table["timestamp"].to_numpy(np.float64))
    if kind.columns != KEYFRAME_COLUMNS:
        x1, y1, x2, y2 = (table[c].to_numpy() for c in BOX_COLUMNS)
        ok_box = (0 <= x1) & (x1 <= x2) & (x2 <= 1) & (0 <= y1) & (y1 <= y2) & (y2 <= 1)
        action = table["action_id"]
        masks["box"] = full & ~ok_box
        masks["action_id"] = full & ~_is_integer(action)
        if label_ids is not None:
            known = np.isin(action.to_numpy(), np.fromiter(label_ids, dtype=np.float64))
            masks["unknown_action"] = full & ~known
        last = kind.columns[-1]
        has_last = fields == len(kind.columns)
        masks[last] = has_last & ~(
            _is_integer(table[last]) if last == "person_id" else np.isfinite(table[last])
        )
    already = np.zeros(len(table), dtype=bool)
    for reason, mask in masks.items():
        masks[reason] = mask & ~already
        already |= mask
    return masks


def _is_integer(values) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.isfinite(values) & (np.floor(values) == values)


def _raise_first_bad(path, kind, data, starts, ends, bad_lines) -> None:
    firsts = {r: int(lines[0]) for r, lines in bad_lines.items() if len(lines)}
    if not firsts:
        return
    reason = min(firsts, key=firsts.get)
    line = firsts[reason]
    text = data[starts[line - 1]:ends[line - 1]].decode("utf-8", "replace")
    what, fix = _REASONS[reason]
    fix = fix.format(counts=" or ".join(map(str, sorted(kind.field_counts))))
    raise AvaFormatError(
        f"{path}:{line}: bad {kind.name} row {text!r}: {what}; {fix} "
        "(or read with on_bad_row='skip' to leave such rows out)"
    )


def _split_rows(table: pd.DataFrame, fields: np.ndarray, skipped: dict,
                whole_seconds: bool) -> AvaCsv:
    table = table.astype({"video_id": object})
    seconds = keyframe_seconds(table["timestamp"])
    whole = whole_seconds or bool((np.floor(seconds) == seconds).all())
    table["timestamp"] = seconds.astype(np.int64) if whole else seconds
    empty = table.loc[fields == 2, list(KEYFRAME_COLUMNS)].reset_index(drop=True)
    rows = table.loc[fields > 2].reset_index(drop=True)
    if "action_id" in rows:
        rows["action_id"] = rows["action_id"].astype(np.int64)
    if "person_id" in rows:
        rows["person_id"] = rows["person_id"].fillna(-1).astype(np.int64)
    return AvaCsv(rows=rows, empty_keyframes=empty, skipped=skipped)


def write_groundtruth_csv(path: str | Path, *, rows: pd.DataFrame,
                          empty_keyframes: pd.DataFrame | None = None) -> None:
    """Writes GT rows (GT_COLUMNS) with 3-decimal boxes as AVA does; rows with
    person_id -1 (or no person_id column) get 7 columns. Empty keyframes follow
    as two-column rows."""
    if "person_id" not in rows:
        rows = rows.assign(person_id=-1)
    table = _checked_for_write(rows, _GT, path)
    person = table["person_id"].astype(np.int64)
    # an empty last field is cut below, so unknown person ids give 7 columns
    table["person_id"] = person.astype(str).where(person >= 0, "")
    text = table.to_csv(header=False, index=False, float_format="%.3f")
    _write_text(path, text.replace(",\n", "\n"), empty_keyframes)


def write_results_csv(path: str | Path, *, rows: pd.DataFrame,
                      empty_keyframes: pd.DataFrame | None = None) -> None:
    """Writes result rows (RESULT_COLUMNS) as the challenge expects them: boxes
    with 3 decimals, as AVA's own files; scores as the shortest text that keeps
    their order and ties (``_score_text``). ``results_as_written(rows)`` gives
    the rows a reader gets back."""
    table = _checked_for_write(rows, _RESULTS, path)
    single = _float32_scores(table["score"].to_numpy(np.float64))  # one choice for the file
    parts = []
    for start in range(0, len(table), _ROWS_PER_CHUNK):  # bounds the text columns' memory
        part = table.iloc[start:start + _ROWS_PER_CHUNK].copy()
        for column in BOX_COLUMNS:
            part[column] = _box_text(part[column].to_numpy(np.float64))
        part["score"] = _score_text(part["score"].to_numpy(np.float64), single)
        parts.append(part.to_csv(header=False, index=False))
    _write_text(path, "".join(parts), empty_keyframes)


def results_as_written(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` (RESULT_COLUMNS) with boxes and scores as write_results_csv
    writes them and a reader reads them back."""
    out = rows.copy()
    for column in BOX_COLUMNS:
        out[column] = written_boxes(rows[column].to_numpy(np.float64))
    scores = rows["score"].to_numpy(np.float64)
    out["score"] = _score_text(scores, _float32_scores(scores)).astype(np.float64)
    return out


def written_boxes(values: np.ndarray) -> np.ndarray:
    """Box coordinates as write_results_csv writes them and a reader reads them back."""
    unique, inverse = np.unique(values, return_inverse=True)
    return np.char.mod("%.3f", unique).astype(np.float64)[inverse]


def _box_text(values: np.ndarray) -> np.ndarray:
    unique, inverse = np.unique(values, return_inverse=True)
    return np.char.mod("%.3f", unique)[inverse]


def _float32_scores(scores: np.ndarray) -> bool:
    return bool(np.array_equal(scores.astype(np.float32).astype(np.float64), scores))


def _score_text(scores: np.ndarray, float32: bool) -> np.ndarray:
    """Model scores are float32 values: their shortest float32 text (at most 9
    digits) reads back, through float(), to a float64 that rounds to the same
    float32, and rounding is monotone, so order and ties are kept. Other
    scores (e.g. an ensemble's float64 means) get the float64 shortest text;
    one file never mixes the two, whose values would not keep their order."""
    return (scores.astype(np.float32) if float32 else scores).astype(str)


def write_excluded_timestamps(path: str | Path, *, keyframes: pd.DataFrame) -> None:
    """Writes ``video_id,timestamp`` rows (timestamps zero-padded to 4 digits)."""
    _write_text(path, "", keyframes)


def _checked_for_write(rows: pd.DataFrame, kind: _Kind, path) -> pd.DataFrame:
    missing = [c for c in kind.columns if c not in rows.columns]
    if missing:
        raise AvaFormatError(f"{path}: rows to write lack columns {missing}")
    table = rows[list(kind.columns)].reset_index(drop=True)
    floats = table.astype({c: np.float64 for c in kind.columns[1:]})
    fields = np.full(len(table), len(kind.columns))
    masks = _bad_row_masks(floats, fields, kind, None, whole_seconds=False)
    bad = np.logical_or.reduce(list(masks.values()))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        reason = next(r for r, m in masks.items() if m[i])
        raise AvaFormatError(
            f"{path}: row {i} to write {table.iloc[i].to_dict()}: {_REASONS[reason][0]}")
    table["timestamp"] = _padded_seconds(table["timestamp"])
    return table.astype({"action_id": np.int64})


def _padded_seconds(timestamps: pd.Series) -> pd.Series:
    """Whole seconds zero-padded to 4 digits; others as the shortest text of
    their keyframe_seconds value, which reads back to the same keyframe."""
    seconds = keyframe_seconds(timestamps)
    whole = np.floor(seconds) == seconds
    text = pd.Series(np.where(whole, seconds, 0).astype(np.int64).astype(str)).str.zfill(4)
    if not whole.all():
        text[~whole] = seconds[~whole].astype(str)
    return text


def _write_text(path, text: str, empty_keyframes: pd.DataFrame | None) -> None:
    if empty_keyframes is not None and len(empty_keyframes):
        keys = empty_keyframes[list(KEYFRAME_COLUMNS)].reset_index(drop=True)
        keys = keys.assign(timestamp=_padded_seconds(keys["timestamp"]))
        text += keys.to_csv(header=False, index=False)
    Path(path).write_text(text)


_BLOCK = re.compile(r"(\w+)\s*\{([^{}]*)\}")
_FIELD = re.compile(r'(\w+)\s*:\s*("(?:[^"\\]|\\.)*"|[^\s"]+)')


def read_label_map(path: str | Path) -> dict[int, str]:
    """Reads a pbtxt label map → {action id: name}.

    Accepts the official layout ``item {\\n  name: "…"\\n  id: N\\n}`` and, leniently,
    ``label { … }`` blocks, ``label_id`` for ``id``, ``display_name`` for
    ``name`` (``name`` wins when both are there) and any layout of whitespace.
    """
    text = Path(path).read_text()
    labels: dict[int, str] = {}
    for block in _BLOCK.finditer(text):
        line = text.count("\n", 0, block.start()) + 1
        fields = dict(m.groups() for m in _FIELD.finditer(block.group(2)))
        raw_id = fields.get("id", fields.get("label_id"))
        name = fields.get("name", fields.get("display_name", '""')).strip('"')
        if raw_id is None or not re.fullmatch(r"-?\d+", raw_id):
            raise AvaFormatError(f"{path}:{line}: label map entry has no integer "
                                 f"`id:` (found {raw_id!r}); add `id: N`")
        if int(raw_id) in labels:
            raise AvaFormatError(f"{path}:{line}: action id {raw_id} appears twice")
        labels[int(raw_id)] = name
    if not labels:
        raise AvaFormatError(f"{path}: no `item {{ name: ... id: N }}` entries found")
    return labels


def write_label_map(path: str | Path, *, labels: Mapping[int, str]) -> None:
    """Writes ``item {\\n  name: "…"\\n  id: N\\n}`` per id, sorted, in the exact
    indentation the official evaluator's line-based reader expects."""
    out = []
    for action_id, name in sorted(labels.items()):
        if '"' in name or "\n" in name:
            raise AvaFormatError(f"{path}: label {action_id} name {name!r} contains a "
                                 "quote or newline, which the official reader cannot read")
        out.append(f'item {{\n  name: "{name}"\n  id: {int(action_id)}\n}}\n')
    Path(path).write_text("".join(out))
