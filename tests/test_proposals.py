"""The AVA proposals pickle reader: real fixture, every protocol, no code run."""

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from avapipe.data.ava import AvaFormatError
from avapipe.data.proposals import read_proposals

DATA = Path(__file__).parent / "data"


def test_proposals_sample():
    proposals = read_proposals(DATA / "ava_proposals_sample.pkl")
    assert sorted(proposals) == [("0f39OWEqJ24", 902), ("0f39OWEqJ24", 903),
                                 ("_-Z6wFjXtGQ", 902)]
    boxes = proposals[("_-Z6wFjXtGQ", 902)]
    assert boxes.shape == (3, 5) and boxes.dtype == np.float64
    assert boxes[0].tolist() == [0.202, 0.15, 0.744, 0.985, 0.281325]


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_proposals_of_every_pickle_protocol(tmp_path, protocol):
    content = {"vid_one_xyz,0902": np.array([[0.1, 0.2, 0.3, 0.4]], dtype=np.float32),
               "vid_one_xyz,0903": np.zeros((0, 5))}
    (tmp_path / "p.pkl").write_bytes(pickle.dumps(content, protocol=protocol))
    proposals = read_proposals(tmp_path / "p.pkl")
    assert proposals[("vid_one_xyz", 902)].tolist() == [
        [float(np.float32(v)) for v in (0.1, 0.2, 0.3, 0.4)]]
    assert proposals[("vid_one_xyz", 903)].shape == (0, 5)


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_proposals_pickle_cannot_run_code(tmp_path):
    marker = tmp_path / "created_by_pickle"
    (tmp_path / "p.pkl").write_bytes(pickle.dumps({"vid_one_xyz,0902": _RunsCode(marker)}))
    with pytest.raises(AvaFormatError, match=r"asks for \w+\.mkdir"):
        read_proposals(tmp_path / "p.pkl")
    assert not marker.exists()


@pytest.mark.parametrize("content, problem", [
    ([np.zeros((1, 5))], "not a dict"),
    ({"vid_one_xyz": np.zeros((1, 5))}, "not 'video_id,timestamp'"),
    ({"vid_one_xyz,0902": np.zeros((1, 3))}, r"\(1, 3\)"),
    ({"vid_one_xyz,0902": np.full((1, 4), np.nan)}, "NaN"),
])
def test_proposals_errors(tmp_path, content, problem):
    (tmp_path / "p.pkl").write_bytes(pickle.dumps(content))
    with pytest.raises(AvaFormatError, match=problem):
        read_proposals(tmp_path / "p.pkl")
