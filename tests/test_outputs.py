import json
import os
import signal
import subprocess
import sys
import time

import pytest

from avapipe.outputs import (
    OutputLockedError, lock_path, output_lock, publish, replacing_file, replacing_folder,
    restore_interrupted, staging_path,
)
from avapipe.provenance import read_record

HOLD = """
import sys, time
from pathlib import Path
from avapipe.outputs import output_lock
with output_lock(Path(sys.argv[1])):
    print("locked", flush=True)
    time.sleep(60)
"""


def hold_lock(path):
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE,
                             text=True)
    assert child.stdout.readline().strip() == "locked"
    return child


def test_a_second_writer_fails_at_once_naming_the_holder(tmp_path):
    out = tmp_path / "store.zarr"
    child = hold_lock(out)
    try:
        start = time.monotonic()
        with pytest.raises(OutputLockedError, match=rf"{out} is being written by pid {child.pid} "
                                                    r"on .*kill {pid}.*dvc exp run --queue"
                                                    .replace("{pid}", str(child.pid))):
            with output_lock(out):
                pass
        assert time.monotonic() - start < 1
        holder = json.loads(lock_path(out).read_text())
        assert holder["pid"] == child.pid and "-c" in holder["command"]
    finally:
        child.kill()
        child.wait()


def test_the_lock_of_a_killed_writer_is_taken_over_with_a_message(tmp_path):
    out = tmp_path / "store.zarr"
    child = hold_lock(out)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert lock_path(out).exists()  # kill -9 leaves the file behind
    messages = []
    with output_lock(out, log=messages.append):
        assert json.loads(lock_path(out).read_text())["pid"] == os.getpid()
    assert len(messages) == 1
    assert f"taking over the stale lock of pid {child.pid}" in messages[0]
    assert "no longer running" in messages[0]
    assert not lock_path(out).exists()  # released: the next writer says nothing
    with output_lock(out, log=messages.append):
        pass
    assert len(messages) == 1


def test_a_failed_folder_write_leaves_the_old_folder_and_no_partial(tmp_path):
    out = tmp_path / "labels"
    out.mkdir()
    (out / "train.csv").write_text("old")
    with pytest.raises(RuntimeError, match="cut"):
        with replacing_folder(out, record={"stage": "prepare", "params": {}}) as tmp:
            (tmp / "train.csv").write_text("new, half written")
            raise RuntimeError("cut")
    assert [p.name for p in out.iterdir()] == ["train.csv"]
    assert (out / "train.csv").read_text() == "old"
    assert not staging_path(out).exists() and not lock_path(out).exists()


def test_a_finished_folder_write_replaces_the_old_one_and_carries_its_record(tmp_path):
    out = tmp_path / "labels"
    out.mkdir()
    (out / "stale.csv").write_text("old")
    record = {"stage": "prepare", "params": {"data": {"source": "synthetic"}}}
    with replacing_folder(out, record=record) as tmp:
        (tmp / "train.csv").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["provenance.json", "train.csv"]
    assert read_record(out) == record


def test_a_publish_cut_between_its_renames_gets_the_old_output_back(tmp_path):
    out, new = tmp_path / "memory", tmp_path / "memory.partial"
    out.mkdir()
    (out / "a").write_text("old")
    new.mkdir()
    (new / "a").write_text("new")
    os.replace(out, tmp_path / "memory.old")  # what publish had done when it was killed
    restore_interrupted(out)
    assert (out / "a").read_text() == "old" and not (tmp_path / "memory.old").exists()
    publish(new, out)
    assert (out / "a").read_text() == "new" and not new.exists()


def test_a_file_is_replaced_whole_or_not_at_all(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with replacing_file(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError
    assert path.read_text() == "old" and list(tmp_path.iterdir()) == [path]
    with replacing_file(path) as tmp:
        tmp.write_text("new")
    assert path.read_text() == "new" and list(tmp_path.iterdir()) == [path]
