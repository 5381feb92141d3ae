import numpy as np
import pytest

from avapipe.evaluation.probe_features import (MEMORY_BINS, memory_summary, probe_features,
                                               set_summary)
from avapipe.features.memory import build_memory_index
from avapipe.features.store import NUM_PARTS
from avapipe.models.dataset import KeyframeDataset
from test_dataset import C, CP, KEYFRAMES, store  # noqa: F401 (fixture)


def test_set_summary_is_mean_max_and_an_empty_flag():
    members = np.array([[1.0, -2.0], [3.0, 0.0]])
    np.testing.assert_array_equal(set_summary(members, 2), [2.0, -1.0, 3.0, 0.0, 0.0])
    np.testing.assert_array_equal(set_summary(np.zeros((0, 2)), 2), [0, 0, 0, 0, 1.0])


def test_memory_spans_split_at_the_bin_edges():
    offsets = np.array([-12, -11, -10, -4, -3, -1, 0, 1, 3, 4, 10, 11])
    memory = offsets[:, None].astype(np.float32)
    spans = memory_summary(memory, offsets, 1).reshape(len(MEMORY_BINS) + 1, 3)
    np.testing.assert_array_equal(spans[:, 2], 0)  # every span has members
    np.testing.assert_array_equal(spans[:, 1], [-11, -4, -1, 0, 3, 10, 11])  # max per span
    np.testing.assert_array_equal(spans[:, 0], [-11.5, -7, -2, 0, 2, 7, 11])  # mean per span


def test_rows_hold_each_persons_own_vector_and_its_sources(store):  # noqa: F811
    memory = build_memory_index(persons=store.persons, keyframes=KEYFRAMES, span=1, per_second=5)
    targets = np.arange(len(store.persons) * 2, dtype=np.float32).reshape(-1, 2)
    data = KeyframeDataset(store, memory, keyframes=KEYFRAMES, targets=targets,
                           with_parts=True, preload=True)
    rows = probe_features(data)
    # persons of a@902 (box 0, 1), a@903 (0), b@902 (0); a@904 and c@902 have nobody
    assert rows.keys.values.tolist() == [["a", 902, 0], ["a", 902, 1], ["a", 903, 0],
                                         ["b", 902, 0]]
    np.testing.assert_array_equal(rows.person[:, :2], [[2, 0], [2, 1], [3, 0], [2, 0]])
    others = rows.sources["persons"]
    assert others.shape == (4, 2 * C + 1)
    np.testing.assert_array_equal(others[0, :2], [2, 1])          # box 0 sees box 1
    np.testing.assert_array_equal(others[1, :2], [2, 0])          # and box 1 sees box 0
    np.testing.assert_array_equal(others[2:, -1], [1, 1])         # alone: the empty flag
    objects = rows.sources["objects"]
    np.testing.assert_array_equal(objects[2, :2], [3.0, 0.5])     # mean of a@903's two objects
    np.testing.assert_array_equal(objects[2, C:C + 2], [3, 1])    # and their max
    assert objects[3, -1] == 1                                    # b@902 has no object
    # a@902's memory: 902/0 and 902/1 at offset 0 (span 3), 903/0 at offset +1 (span 4)
    spans = rows.sources["memory"][0].reshape(len(MEMORY_BINS) + 1, 2 * C + 1)
    np.testing.assert_allclose(spans[3, :2], [2, 0.5])
    np.testing.assert_allclose(spans[4, :2], [3, 0])
    np.testing.assert_array_equal(spans[:, -1], [1, 1, 1, 0, 0, 1, 1])  # the empty spans
    assert rows.sources["parts"].shape == (4, NUM_PARTS * CP)
    np.testing.assert_array_equal(rows.sources["parts"][0], data[0]["parts"][0].reshape(-1))
    np.testing.assert_array_equal(rows.targets, np.concatenate([data[i]["targets"]
                                                                for i in range(len(data))]))


def test_no_persons_gives_empty_rows_and_unknown_sources_are_named(store):  # noqa: F811
    empty = KeyframeDataset(store, None, keyframes=KEYFRAMES.iloc[[2, 4]], targets=None,
                            with_parts=False, preload=True)
    rows = probe_features(empty, sources=("objects", "memory"))
    assert rows.person.shape == (0, C) and rows.sources["objects"].shape == (0, 2 * C + 1)
    assert rows.targets is None and len(rows.keys) == 0
    with pytest.raises(ValueError, match="unknown probe sources \\['pose'\\]"):
        probe_features(empty, sources=("pose",))
    with pytest.raises(ValueError, match="with_parts=True"):
        probe_features(empty, sources=("parts",))
