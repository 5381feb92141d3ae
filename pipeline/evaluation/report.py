"""The statistics of the ablation report: mAP per configuration over seeds, and
paired bootstrap differences from a baseline (``avapipe.evaluation.ablation``
assembles them into the report).

Per configuration (e.g. fusion, pose_part) the runs of different seeds give
a mean mAP and a t-interval (Student's t with n - 1 degrees of freedom).

The difference from the baseline is bootstrapped over validation keyframes:
each resample draws the keyframes with replacement, the same draw for every
run, and recomputes frame-mAP of each run; per resample the difference is the
mean over the seeds both configurations ran of (config - baseline); its
percentile interval is the reported CI.

Recomputing mAP on a resample is exact without re-running the matcher: the
official evaluator matches detections to GT within each keyframe, so whether a
detection is a true positive does not depend on the other keyframes. Drawing a
keyframe k times multiplies its detections and GT boxes by k, which here
becomes a weight k in the cumulative TP / FP counts and in the GT count of
each class. The result equals evaluate_frame_map on the resampled keyframes
up to the order of detections with equal scores. The AP of a class group
(``mAP_<group>`` as in metrics.json) is the mean over the group's classes that
have GT, on the full set and on each resample alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from avapipe.evaluation import frame_map
from avapipe.evaluation.frame_map import OFFICIAL_MAX_DETECTIONS
from avapipe.evaluation.official_reader import KeyframeCodes, included_keys, official_rows

BASELINE = {"fusion": "none", "pose_part": False}
_CELLS_PER_CHUNK = 4_000_000  # resamples x detections handled at once


@dataclass(frozen=True)
class ExperimentRun:
    """One trained model: its configuration (without the seed), its seed, and
    either its AVA result rows on the validation keyframes or only its mAP."""

    config: Mapping[str, object]
    seed: int
    predictions: pd.DataFrame | None = None
    mAP: float | None = None


def t_interval(values: Sequence[float], *, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): mean ± t_{(1+confidence)/2, n-1} · s / √n, s the sample
    standard deviation. With one value the interval is (nan, nan)."""
    values = np.asarray(values, np.float64)
    if values.size == 0:
        raise ValueError("t_interval needs at least one value")
    mean = float(values.mean())
    if values.size == 1:
        return mean, float("nan"), float("nan")
    quantile = stats.t.ppf((1 + confidence) / 2, values.size - 1)
    half = quantile * values.std(ddof=1) / np.sqrt(values.size)
    return mean, float(mean - half), float(mean + half)


def config_summary(runs: pd.DataFrame, *, config_columns: Sequence[str],
                   confidence: float = 0.95, value: str = "mAP") -> pd.DataFrame:
    """runs: config_columns, seed, ``value`` (one row per run). Returns one row per
    configuration: config_columns, seeds (count), <value>_mean, <value>_low, <value>_high."""
    rows = []
    for config, group in runs.groupby(list(config_columns), sort=False, dropna=False):
        mean, low, high = t_interval(group[value].to_numpy(), confidence=confidence)
        config = config if isinstance(config, tuple) else (config,)
        rows.append({**dict(zip(config_columns, config)), "seeds": len(group),
                     f"{value}_mean": mean, f"{value}_low": low, f"{value}_high": high})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class KeyframeOutcomes:
    """One run's official detection outcomes on a fixed list of K keyframes.

    keyframe, action, score, is_tp: per detection (after the 50-per-keyframe
    cap and the box check), keyframe an index in [0, K). gt_counts: Long[K, C],
    GT instances per keyframe and class; classes: the C label-map ids."""

    keyframe: np.ndarray
    action: np.ndarray
    score: np.ndarray
    is_tp: np.ndarray
    gt_counts: np.ndarray
    classes: np.ndarray = field(repr=False)


class KeyframeIndex:
    """The keyframes that are scored: the official evaluator's included keys
    (every GT keyframe, two-column ones included), excluded ones left out,
    numbered 0..K-1 in ``table`` order. Detections elsewhere are ignored."""

    def __init__(self, groundtruth: pd.DataFrame, detections: Sequence[pd.DataFrame],
                 excluded: pd.DataFrame | None,
                 empty_keyframes: pd.DataFrame | None = None) -> None:
        extra = [t for t in (empty_keyframes, excluded) if t is not None]
        self.codes = KeyframeCodes([groundtruth, *detections, *extra])
        self.sorted_codes = included_keys(self.codes, groundtruth=groundtruth,
                                          empty_keyframes=empty_keyframes, excluded=excluded)
        annotated = [groundtruth] + ([] if empty_keyframes is None else [empty_keyframes])
        keys = pd.concat([t[["video_id", "timestamp"]] for t in annotated],
                         ignore_index=True).astype({"video_id": str})
        codes = self.codes.of(keys)
        _, first = np.unique(codes, return_index=True)
        keys, codes = keys.iloc[first], codes[first]
        keep = np.isin(codes, self.sorted_codes)
        self.table = keys[keep].iloc[np.argsort(codes[keep])].reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.sorted_codes)

    def index(self, codes: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.sorted_codes, codes)


def resample_weights(*, keyframes: int, resamples: int, seed: int) -> np.ndarray:
    """Long[resamples, keyframes]: how often each keyframe is drawn when
    ``keyframes`` keyframes are drawn with replacement, per resample."""
    draws = np.random.default_rng(seed).integers(0, keyframes, size=(resamples, keyframes))
    weights = np.zeros((resamples, keyframes), np.int64)
    np.add.at(weights, (np.arange(resamples)[:, None], draws), 1)
    return weights


def keyframe_outcomes(*, groundtruth: pd.DataFrame, detections: pd.DataFrame,
                      label_map: Mapping[int, str], keyframes: KeyframeIndex,
                      iou_threshold: float = 0.5) -> KeyframeOutcomes:
    """Which detections the official evaluator counts as true positives (frame_map's
    own matching, module docstring of frame_map), keyed by keyframe; detections
    outside ``keyframes`` are ignored, as there."""
    label_ids = np.fromiter(label_map, dtype=np.int64)
    codes, included = keyframes.codes, keyframes.sorted_codes
    gt = official_rows(groundtruth, codes.of(groundtruth), label_ids, included, None)
    det = official_rows(detections, codes.of(detections), label_ids, included,
                        OFFICIAL_MAX_DETECTIONS)
    det = det[(det["y1"] < det["y2"]) & (det["x1"] < det["x2"])].reset_index(drop=True)
    is_tp = frame_map._true_positives(det, gt, n_classes=int(label_ids.max()) + 1,
                                      iou_threshold=iou_threshold)
    classes = np.sort(label_ids)
    gt_counts = np.zeros((len(keyframes), len(classes)), np.int64)
    np.add.at(gt_counts, (keyframes.index(gt["key"].to_numpy()),
                          np.searchsorted(classes, gt["action_id"].to_numpy())), 1)
    return KeyframeOutcomes(keyframe=keyframes.index(det["key"].to_numpy()),
                            action=det["action_id"].to_numpy(), score=det["score"].to_numpy(),
                            is_tp=is_tp, gt_counts=gt_counts, classes=classes)


def weighted_aps(outcomes: KeyframeOutcomes, weights: np.ndarray) -> np.ndarray:
    """AP per class [B, C] (NaN for a class without GT in a resample) of B resamples
    given as keyframe weights Long[B, K] (how many times each keyframe was drawn)."""
    order = np.argsort(outcomes.action, kind="stable")  # as frame_map's _summarize
    action = outcomes.action[order]
    aps = np.full((len(weights), len(outcomes.classes)), np.nan)
    for c, class_id in enumerate(outcomes.classes):
        low, high = np.searchsorted(action, [class_id, class_id + 1])
        rows = order[low:high]
        rows = rows[np.argsort(outcomes.score[rows])[::-1]]  # as _precision_recall
        num_gt = weights @ outcomes.gt_counts[:, c]
        has_gt = num_gt > 0
        aps[has_gt, c] = _weighted_ap(weights[has_gt][:, outcomes.keyframe[rows]],
                                      outcomes.is_tp[rows], num_gt[has_gt])
    return aps


def weighted_map(outcomes: KeyframeOutcomes, weights: np.ndarray) -> np.ndarray:
    """Frame-mAP [B] of B resamples given as keyframe weights Long[B, K] (how many
    times each keyframe was drawn); all ones gives evaluate_frame_map's mAP."""
    return _mean_over(weighted_aps(outcomes, weights), slice(None))


def _mean_over(aps: np.ndarray, columns) -> np.ndarray:
    """The mean over the chosen class columns of aps [B, C] that have GT (NaN if none)."""
    chosen = aps[:, columns]
    with np.errstate(all="ignore"):
        return np.nanmean(chosen, axis=1) if chosen.shape[1] else np.full(len(aps), np.nan)


def metric_columns(classes: np.ndarray, groups: Mapping[int, str] | None) -> dict[str, np.ndarray]:
    """{'mAP': every class column, 'mAP_<group>': the columns of the group's classes}
    for the C sorted label-map ids ``classes`` and groups {action id: group}, the
    names metrics.json uses; groups None gives mAP only."""
    columns = {"mAP": np.arange(len(classes))}
    for group in dict.fromkeys((groups or {}).values()):
        ids = [a for a, g in groups.items() if g == group]
        columns[f"mAP_{group}"] = np.flatnonzero(np.isin(classes, ids))
    return columns


def _weighted_ap(weight: np.ndarray, is_tp: np.ndarray, num_gt: np.ndarray) -> np.ndarray:
    """All-point interpolated AP [B] of detections in descending score order with
    per-resample weights [B, n] (frame_map's _average_precision, weighted)."""
    if weight.shape[1] == 0:
        return np.zeros(len(weight))
    out = np.empty(len(weight))
    step = max(1, _CELLS_PER_CHUNK // weight.shape[1])
    for start in range(0, len(weight), step):
        w = weight[start:start + step].astype(np.float64)
        cum_tp = np.cumsum(w * is_tp, axis=1)
        cum_all = np.cumsum(w, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(cum_all > 0, cum_tp / cum_all, 0.0)
        envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
        gained = w * is_tp / num_gt[start:start + step, None]
        out[start:start + step] = (gained * envelope).sum(axis=1)
    return out


def config_key(config: Mapping[str, object]) -> tuple:
    """A configuration as a hashable key (its items, sorted)."""
    return tuple(sorted(config.items()))


def score_runs(
    *, runs: Sequence[ExperimentRun], groundtruth: pd.DataFrame, label_map: Mapping[int, str],
    excluded: pd.DataFrame | None, groups: Mapping[int, str] | None = None,
    resamples: int = 1000, seed: int = 0, empty_keyframes: pd.DataFrame | None = None,
) -> dict[tuple, tuple[dict[str, float], dict[str, np.ndarray]]]:
    """Each run's metrics (metric_columns: mAP and, with groups, mAP_<group>) on the
    full validation set and on the same resample_weights(seed=seed) resamples over
    KeyframeIndex order: {(config key, seed): ({metric: value}, {metric: [resamples]})}.
    runs: with predictions (AVA result rows on the validation keyframes)."""
    missing = [(dict(r.config), r.seed) for r in runs if r.predictions is None]
    if missing:
        raise ValueError(f"runs {missing[:3]} have no predictions; the bootstrap needs each "
                         "run's result rows on the validation keyframes")
    keyframes = KeyframeIndex(groundtruth, [r.predictions for r in runs], excluded,
                              empty_keyframes)
    weights = resample_weights(keyframes=len(keyframes), resamples=resamples, seed=seed)
    full = np.ones((1, len(keyframes)), np.int64)
    scores = {}
    for run in runs:
        outcomes = keyframe_outcomes(groundtruth=groundtruth, detections=run.predictions,
                                     label_map=label_map, keyframes=keyframes)
        full_aps, aps = weighted_aps(outcomes, full), weighted_aps(outcomes, weights)
        columns = metric_columns(outcomes.classes, groups)
        scores[(config_key(run.config), run.seed)] = (
            {name: float(_mean_over(full_aps, cols)[0]) for name, cols in columns.items()},
            {name: _mean_over(aps, cols) for name, cols in columns.items()})
    return scores


def bootstrap_differences(
    *, runs: Sequence[ExperimentRun], groundtruth: pd.DataFrame, label_map: Mapping[int, str],
    excluded: pd.DataFrame | None, baseline: Mapping[str, object] = BASELINE,
    resamples: int = 1000, confidence: float = 0.95, seed: int = 0,
    empty_keyframes: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Paired bootstrap of each configuration's mAP difference from ``baseline``.

    runs: with predictions (AVA result rows on the validation keyframes).
    The resamples are resample_weights(seed=seed) over KeyframeIndex order.
    Returns one row per non-baseline configuration (its baseline: see
    paired_differences): its config keys, paired_seeds
    (seeds both ran), diff (mean over paired seeds of the full-set mAP
    difference), diff_low, diff_high (percentile interval over resamples);
    NaN where no seed is shared with the baseline.
    """
    scores = score_runs(runs=runs, groundtruth=groundtruth, label_map=label_map,
                        excluded=excluded, resamples=resamples, seed=seed,
                        empty_keyframes=empty_keyframes)
    return paired_differences(scores, runs, baseline=baseline, confidence=confidence)


def percentile_interval(values: np.ndarray, *, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` percentile interval of bootstrap values [B],
    NaN values left out; (nan, nan) when there is none."""
    if not values.size or np.isnan(values).all():
        return float("nan"), float("nan")
    tail = 100 * (1 - confidence) / 2
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return float(low), float(high)


def paired_differences(scores: dict, runs: Sequence[ExperimentRun], *,
                       baseline: Mapping[str, object], confidence: float = 0.95,
                       metric: str = "mAP") -> pd.DataFrame:
    """bootstrap_differences' table for one metric of score_runs' scores.

    Each configuration is compared with the configuration that has the values of
    ``baseline`` and its own values of every other key (e.g. fusion=none with the
    same head options); configurations equal to their baseline get no row.
    """
    configs = {config_key(r.config): dict(r.config) for r in runs}
    rows = []
    for key, config in configs.items():
        base = config_key({**config, **baseline})
        if key == base:
            continue
        base_seeds = {seed for k, seed in scores if k == base}
        seeds = sorted({seed for k, seed in scores if k == key} & base_seeds)
        diff = low = high = float("nan")
        if seeds:
            diff = float(np.mean([scores[(key, s)][0][metric] - scores[(base, s)][0][metric]
                                  for s in seeds]))
            per_resample = np.mean([scores[(key, s)][1][metric] - scores[(base, s)][1][metric]
                                    for s in seeds], axis=0)
            low, high = percentile_interval(per_resample, confidence=confidence)
        rows.append({**config, "paired_seeds": len(seeds), "diff": diff,
                     "diff_low": low, "diff_high": high})
    return pd.DataFrame(rows)
