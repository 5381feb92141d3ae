"""Linear probe of the cached features: does a source hold evidence for a
class group that the person's own feature lacks?

Each interaction module reads one source beside the person: the keyframe's
objects, the other persons, the memory window, or the person's parts
(``probe_features`` turns each into one vector per person). For every source
S two ridge classifiers per class are fitted on the train persons, one on
[person] and one on [person, S], and scored on the val persons by average
precision (all-point interpolated, as frame_map's; here over the cached person
boxes, each labelled by its GT box at IoU >= 0.5 and negative without one, so
localisation does not enter). A group's AP is the mean over its classes
that have a val positive. If [person, S] beats [person] on a group, S carries
evidence for it that a linear read-out of the person feature does not have;
if not, a module reading S has nothing to add on this data (or needs more than
a linear read-out of a pooled set to find it).

Columns are z-scored on the train rows and each block (the person, the
source) scaled to unit total variance, so a wide block does not swamp a
narrow one; the ridge penalty is chosen per feature set by video-grouped
cross-validation on train. The CI of a difference is a paired bootstrap over
val videos (a video's persons are drawn together).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from avapipe.evaluation.probe_features import ProbeFeatures
from avapipe.evaluation.report import (
    KeyframeOutcomes, metric_columns, percentile_interval, resample_weights, weighted_aps,
)

PENALTIES = (1e-3, 1e-2, 1e-1, 1.0, 10.0)  # ridge penalty per train row


def _blocks(blocks: Sequence[np.ndarray], train: np.ndarray) -> np.ndarray:
    """The blocks side by side, z-scored on the ``train`` rows, each block
    scaled to total variance 1."""
    scaled = []
    for block in blocks:
        block = block.astype(np.float64)
        mean, std = block[train].mean(0), block[train].std(0)
        kept = std > 1e-8
        z = (block[:, kept] - mean[kept]) / std[kept]
        scaled.append(z / np.sqrt(max(1, z.shape[1])))
    return np.concatenate(scaled, axis=1)


def ridge_scores(x_fit: np.ndarray, y_fit: np.ndarray, x_score: np.ndarray,
                 penalties: Sequence[float]) -> np.ndarray:
    """Ridge predictions [len(penalties), n_score, A] of y_fit [n, A] on x_score,
    with an unpenalised intercept, one penalty ``p * n`` per entry of penalties.
    Solved through one eigendecomposition of the smaller Gram matrix."""
    n = len(x_fit)
    x_mean, y_mean = x_fit.mean(0), y_fit.mean(0)
    xc, yc, xs = x_fit - x_mean, y_fit - y_mean, x_score - x_mean
    if xc.shape[1] <= n:  # primal: (XᵀX + λ) w = Xᵀy
        values, vectors = np.linalg.eigh(xc.T @ xc)
        projected, left = vectors.T @ (xc.T @ yc), xs @ vectors
    else:  # dual: w = Xᵀ (XXᵀ + λ)⁻¹ y
        values, vectors = np.linalg.eigh(xc @ xc.T)
        projected, left = vectors.T @ yc, (xs @ xc.T) @ vectors
    values = np.clip(values, 0, None)
    return np.stack([left @ (projected / (values + p * n)[:, None]) + y_mean
                     for p in penalties])


def _class_aps(scores: np.ndarray, labels: np.ndarray, unit: np.ndarray, units: int,
               weights: np.ndarray) -> np.ndarray:
    """AP [B, A] of scores [n, A] against 0/1 labels [n, A] under weights Long[B, units]
    over the rows' bootstrap units ``unit`` [n] (NaN: no positive in a resample)."""
    n, classes = scores.shape
    gt_counts = np.zeros((units, classes), np.int64)
    np.add.at(gt_counts, unit, labels.astype(np.int64))
    outcomes = KeyframeOutcomes(
        keyframe=np.repeat(unit, classes), action=np.tile(np.arange(classes), n),
        score=scores.reshape(-1), is_tp=labels.reshape(-1).astype(bool),
        gt_counts=gt_counts, classes=np.arange(classes))
    return weighted_aps(outcomes, weights)


def _grouped_folds(groups: np.ndarray, folds: int) -> list[np.ndarray]:
    """Row masks of up to ``folds`` folds with every value of ``groups`` in one fold."""
    names = np.unique(groups)
    fold_of = {name: i % folds for i, name in enumerate(names)}
    assigned = np.array([fold_of[g] for g in groups])
    return [assigned == f for f in range(min(folds, len(names)))]


def choose_penalty(x: np.ndarray, y: np.ndarray, groups: np.ndarray, *, folds: int = 3,
                   penalties: Sequence[float] = PENALTIES) -> float:
    """The penalty with the best mean class AP in video-grouped cross-validation."""
    splits = _grouped_folds(groups, folds)
    if len(splits) < 2:
        return float(penalties[len(penalties) // 2])
    totals = np.zeros(len(penalties))
    for held in splits:
        predicted = ridge_scores(x[~held], y[~held], x[held], penalties)
        for i, scores in enumerate(predicted):
            aps = _class_aps(scores, y[held] > 0.5, np.zeros(int(held.sum()), np.int64), 1,
                             np.ones((1, 1), np.int64))[0]
            totals[i] += np.nanmean(aps) if np.isfinite(aps).any() else 0.0
    return float(penalties[int(np.argmax(totals))])


def _group_aps(aps: np.ndarray, columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{group: [B] mean over the group's class columns of aps [B, A] (NaN if none)}."""
    with warnings.catch_warnings():  # a group without positives is NaN, said in the table
        warnings.simplefilter("ignore", RuntimeWarning)
        return {name: (np.nanmean(aps[:, cols], axis=1) if len(cols) else
                       np.full(len(aps), np.nan)) for name, cols in columns.items()}


def _fit_and_score(blocks_train: list[np.ndarray], blocks_val: list[np.ndarray], y: np.ndarray,
                   videos: np.ndarray, *, folds: int) -> np.ndarray:
    """Val scores [n_val, A] of a ridge fitted on the train rows."""
    n = len(y)
    x = _blocks([np.concatenate([a, b]) for a, b in zip(blocks_train, blocks_val)],
                np.arange(n))
    penalty = choose_penalty(x[:n], y, videos, folds=folds)
    return ridge_scores(x[:n], y, x[n:], [penalty])[0]


def linear_probe(*, train: ProbeFeatures, val: ProbeFeatures, action_ids: Sequence[int],
                 groups: Mapping[int, str] | None, resamples: int = 1000, seed: int = 0,
                 confidence: float = 0.95, folds: int = 3,
                 max_train_rows: int = 20000) -> pd.DataFrame:
    """The probe table (module docstring): one row per (group, source) with
    group ('all' or a group name), source, ap_person, ap_with_source, diff and
    its bootstrap interval diff_low, diff_high.

    train, val: probe_features of the two splits with the same sources; their
    targets [n, A] follow ``action_ids``. groups: {action id: group} or None
    (only 'all'). max_train_rows: a random subset of train rows (seeded) when
    there are more, to bound the solve on a large dataset.
    """
    if train.targets is None or val.targets is None:
        raise ValueError("the probe needs targets on both splits (KeyframeDataset targets=...)")
    if not len(train.person) or not len(val.person):
        raise ValueError(f"the probe needs persons in both splits; train has "
                         f"{len(train.person)}, val has {len(val.person)}")
    rows = np.random.default_rng(seed).permutation(len(train.person))[:max_train_rows]
    rows.sort()
    y = (train.targets[rows] > 0.5).astype(np.float64)
    videos = train.keys["video_id"].to_numpy()[rows]
    units, names = pd.factorize(val.keys["video_id"])
    weights = np.concatenate([np.ones((1, len(names)), np.int64),
                              resample_weights(keyframes=len(names), resamples=resamples,
                                               seed=seed)])
    labels = val.targets > 0.5
    columns = {("all" if k == "mAP" else k.removeprefix("mAP_")): v
               for k, v in metric_columns(np.asarray(action_ids), groups).items()}

    def group_aps(blocks_train, blocks_val):
        scores = _fit_and_score(blocks_train, blocks_val, y, videos, folds=folds)
        return _group_aps(_class_aps(scores, labels, units, len(names), weights), columns)

    base = group_aps([train.person[rows]], [val.person])
    table = []
    for source in train.sources:
        added = group_aps([train.person[rows], train.sources[source][rows]],
                          [val.person, val.sources[source]])
        for group in columns:
            table.append(_row(group, source, base[group], added[group], confidence))
    return pd.DataFrame(table, columns=["group", "source", "ap_person", "ap_with_source",
                                        "diff", "diff_low", "diff_high"])


def _row(group: str, source: str, base: np.ndarray, added: np.ndarray,
         confidence: float) -> dict:
    """base, added: [1 + B] group AP on the full val set, then per resample."""
    low, high = percentile_interval(added[1:] - base[1:], confidence=confidence)
    return {"group": group, "source": source, "ap_person": float(base[0]),
            "ap_with_source": float(added[0]), "diff": float(added[0] - base[0]),
            "diff_low": low, "diff_high": high}


def format_probe(table: pd.DataFrame) -> str:
    """A markdown table: per group the AP of [person], then per source the AP
    with it and the difference with its CI; a difference whose CI lies above 0
    is marked ``*`` (the source adds evidence)."""
    sources = list(dict.fromkeys(table["source"]))
    header = ["group", "person"] + [f"+{s}" for s in sources]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group, rows in table.groupby("group", sort=False):
        if rows["ap_person"].isna().all():
            lines.append("| " + " | ".join([group] + ["n/a (no val positive)"] * (len(header) - 1))
                         + " |")
            continue
        cells = [group, f"{rows['ap_person'].iloc[0]:.3f}"]
        for source in sources:
            r = rows[rows["source"] == source].iloc[0]
            mark = "*" if r["diff_low"] > 0 else ""
            cells.append(f"{r['ap_with_source']:.3f} ({r['diff']:+.3f}, "
                         f"{r['diff_low']:+.3f}..{r['diff_high']:+.3f}){mark}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
