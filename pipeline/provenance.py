"""Provenance records: every artifact carries the parameters that made it.

A record is a JSON object ``{"stage": name, "params": {section: value}}``,
``value`` being a params.yaml section (a mapping) or a top-level value. It
travels inside the artifact, so that DVC caches and checks it out with it:

- parquet tables: the file's key-value metadata under ``RECORD_KEY``;
- the Zarr feature store: its group attribute ``provenance`` (next to the
  fingerprint of its inputs);
- any other folder: ``provenance.json`` inside it.

A reader compares a record with the parameters it runs with
(``differences``) and refuses an artifact made with other ones.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

RECORD_KEY = b"avapipe.provenance"
FOLDER_RECORD = "provenance.json"
STORE_ATTRIBUTE = "provenance"


class ProvenanceError(ValueError):
    """An input was made with other parameters than the current ones."""


def parquet_metadata(record: dict) -> dict[bytes, bytes]:
    """The key-value metadata that carries ``record`` in a parquet file."""
    return {RECORD_KEY: json.dumps(record, sort_keys=True).encode()}


def read_record(path: Path) -> dict | None:
    """The record of the artifact at ``path``; None if it has none or is absent."""
    path = Path(path)
    if path.suffix == ".parquet" and path.is_file():
        import pyarrow.parquet as pq

        text = (pq.read_schema(path).metadata or {}).get(RECORD_KEY)
        return json.loads(text) if text else None
    if (path / "zarr.json").is_file():
        attributes = json.loads((path / "zarr.json").read_text()).get("attributes", {})
        return attributes.get(STORE_ATTRIBUTE)
    if (path / FOLDER_RECORD).is_file():
        return json.loads((path / FOLDER_RECORD).read_text())
    return None


def write_folder_record(folder: Path, record: dict) -> None:
    """Writes ``record`` as ``folder/provenance.json`` (atomically)."""
    target = Path(folder) / FOLDER_RECORD
    tmp = target.with_name(f".{FOLDER_RECORD}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, target)


def _flat(section: str, value) -> dict[str, object]:
    if isinstance(value, dict):
        return {f"{section}.{k}": v for k, v in value.items()}
    return {section: value}


def differences(recorded: dict, current: dict) -> list[tuple[str, object, object]]:
    """(key, recorded value, current value) of every key that differs, as
    ``section.key`` (or the top-level name); sections only in ``recorded``
    compare with a missing value (None)."""
    found = []
    for section, value in recorded.items():
        old, new = _flat(section, value), _flat(section, current.get(section))
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                found.append((key, old.get(key), new.get(key)))
    return found
