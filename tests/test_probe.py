import numpy as np
import pandas as pd
import pytest

from avapipe.evaluation.probe import format_probe, linear_probe, ridge_scores
from avapipe.evaluation.probe_features import ProbeFeatures


def reference_ridge(x, y, x_score, penalty):
    """Direct solve of min |y - b - Xw|² + penalty·n·|w|² (b unpenalised)."""
    n = len(x)
    design = np.c_[np.ones(n), x]
    gram = design.T @ design + penalty * n * np.diag([0.0] + [1.0] * x.shape[1])
    coef = np.linalg.solve(gram, design.T @ y)
    return np.c_[np.ones(len(x_score)), x_score] @ coef


@pytest.mark.parametrize("columns", [3, 40])  # the primal and the dual solve
def test_ridge_matches_a_direct_solve(columns):
    rng = np.random.default_rng(0)
    x, y, x_score = rng.normal(size=(20, columns)), rng.normal(size=(20, 2)), rng.normal(size=(5, columns))
    got = ridge_scores(x, y, x_score, [0.01, 1.0])
    for i, penalty in enumerate([0.01, 1.0]):
        np.testing.assert_allclose(got[i], reference_ridge(x, y, x_score, penalty), atol=1e-8)


def probe_task(seed, *, videos=12, per_video=20):
    """Class 1 (group 'pose') is in the person vector, class 2 (group 'object') only in
    the 'objects' source; 'noise' carries nothing."""
    rng = np.random.default_rng(seed)
    n = videos * per_video
    labels = rng.random((n, 2)) < 0.3
    person = rng.normal(size=(n, 8))
    person[:, 0] += 2.5 * labels[:, 0]
    objects = rng.normal(size=(n, 5))
    objects[:, 0] += 2.5 * labels[:, 1]
    keys = pd.DataFrame({"video_id": np.repeat([f"v{seed}_{i}" for i in range(videos)], per_video),
                         "timestamp": 902, "box_id": np.tile(np.arange(per_video), videos)})
    return ProbeFeatures(keys=keys, person=person,
                         sources={"objects": objects, "noise": rng.normal(size=(n, 5))},
                         targets=labels.astype(np.float32))


def test_a_source_that_holds_the_evidence_adds_ap_and_noise_does_not():
    table = linear_probe(train=probe_task(0), val=probe_task(1), action_ids=[1, 2],
                         groups={1: "pose", 2: "object"}, resamples=200)
    row = table.set_index(["group", "source"])
    assert row.loc[("object", "objects"), "diff_low"] > 0.2       # from near chance to near 1
    assert row.loc[("object", "objects"), "ap_with_source"] > 0.8
    assert row.loc[("object", "objects"), "ap_person"] < 0.5
    assert abs(row.loc[("pose", "objects"), "diff"]) < 0.05        # pose was already known
    noise = row.loc[("object", "noise")]
    assert noise["diff_low"] <= 0 and abs(noise["diff"]) < 0.1
    all_row = row.loc[("all", "objects")]
    assert all_row["ap_with_source"] == pytest.approx(
        (row.loc[("pose", "objects"), "ap_with_source"]
         + row.loc[("object", "objects"), "ap_with_source"]) / 2)
    text = format_probe(table)
    assert "| object |" in text and "+objects" in text and ")*" in text


def test_ap_is_the_all_point_ap_of_the_val_persons():
    """With one class the 'all' AP of [person] equals the hand-computable AP of the
    fitted scores: here the person vector is the label, so the ranking is perfect."""
    train, val = probe_task(0), probe_task(1)
    perfect = lambda t: ProbeFeatures(keys=t.keys, person=t.targets[:, :1] + 0.0,  # noqa: E731
                                      sources={"noise": t.sources["noise"]},
                                      targets=t.targets[:, :1])
    table = linear_probe(train=perfect(train), val=perfect(val), action_ids=[1], groups=None,
                         resamples=10)
    assert table["group"].tolist() == ["all"]
    assert table["ap_person"].iloc[0] == pytest.approx(1.0)


def test_missing_targets_or_persons_are_clear_errors():
    task = probe_task(0)
    no_targets = ProbeFeatures(keys=task.keys, person=task.person, sources={}, targets=None)
    with pytest.raises(ValueError, match="needs targets"):
        linear_probe(train=no_targets, val=task, action_ids=[1, 2], groups=None)
    empty = ProbeFeatures(keys=task.keys.iloc[:0], person=task.person[:0], sources={},
                          targets=task.targets[:0])
    with pytest.raises(ValueError, match="val has 0"):
        linear_probe(train=task, val=empty, action_ids=[1, 2], groups=None)


def test_a_group_without_val_positives_has_no_ap_and_says_so():
    train, val = probe_task(0), probe_task(1)
    targets = val.targets.copy()
    targets[:, 1] = 0
    val = ProbeFeatures(keys=val.keys, person=val.person, sources=val.sources, targets=targets)
    table = linear_probe(train=train, val=val, action_ids=[1, 2],
                         groups={1: "pose", 2: "object"}, resamples=20)
    assert table[table["group"] == "object"][["ap_person", "diff"]].isna().all().all()
    assert "| object | n/a (no val positive) |" in format_probe(table)
