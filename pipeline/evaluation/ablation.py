"""The ablation report: per configuration and seed set, overall mAP and the AP of
each class group, their 95% t-intervals over seeds, paired bootstrap CIs of the
differences from the baseline, and a plain answer to whether Cube-Fusion beats
the best of the IA structures on this data.

The statistics are those of ``avapipe.evaluation.report``; a run's full-set
mAP and group APs are evaluate_frame_map's, as metrics.json reports them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from avapipe.evaluation.frame_map import evaluate_frame_map
from avapipe.evaluation.report import (BASELINE, ExperimentRun, config_key, config_summary,
                                       paired_differences, score_runs)
from avapipe.evaluation.tables import metrics_dict

CANDIDATE = "cube"
RIVALS = ("serial", "dense", "parallel")


@dataclass(frozen=True)
class AblationReport:
    """overall: one row per configuration (config keys, seeds, mAP_mean / _low / _high
    and, with predictions, paired_seeds, diff, diff_low, diff_high vs the baseline);
    groups: one row per configuration and class group, the same columns with AP_
    for mAP_; cube: one row per setting of the other config keys (cube_versus_best);
    verdicts: its plain sentences."""

    overall: pd.DataFrame
    groups: pd.DataFrame
    cube: pd.DataFrame
    verdicts: list[str]


def full_report(
    *, runs: Sequence[ExperimentRun], groundtruth: pd.DataFrame, label_map: Mapping[int, str],
    excluded: pd.DataFrame | None, groups: Mapping[int, str] | None = None,
    baseline: Mapping[str, object] = BASELINE, resamples: int = 1000,
    confidence: float = 0.95, seed: int = 0, empty_keyframes: pd.DataFrame | None = None,
) -> AblationReport:
    """The AblationReport of runs; groups: {action id: group} (groups.csv / AVA's), None
    for overall mAP only. Group rows and the bootstrap need runs with predictions."""
    columns = sorted({k for r in runs for k in r.config})
    metrics = pd.DataFrame([
        {**{k: r.config.get(k) for k in columns}, "seed": r.seed,
         **_run_metrics(r, groundtruth, label_map, excluded, empty_keyframes, groups)}
        for r in runs])
    scored = [r for r in runs if r.predictions is not None]
    scores = score_runs(runs=scored, groundtruth=groundtruth, label_map=label_map,
                        excluded=excluded, groups=groups, resamples=resamples, seed=seed,
                        empty_keyframes=empty_keyframes) if scored else {}
    overall = _with_differences(config_summary(metrics, config_columns=columns,
                                               confidence=confidence),
                                scores, scored, baseline, confidence, "mAP", columns)
    group_rows = []
    for metric in [m for m in metrics.columns if m.startswith("mAP_")]:
        known = metrics[metrics[metric].notna()].rename(columns={metric: "AP"})
        if known.empty:
            continue
        table = config_summary(known, config_columns=columns, confidence=confidence, value="AP")
        table.insert(len(columns), "group", metric.removeprefix("mAP_"))
        group_rows.append(_with_differences(table, scores, scored, baseline, confidence,
                                            metric, columns))
    cube = cube_versus_best(scores, scored, confidence=confidence)
    return AblationReport(overall=overall, groups=pd.concat(group_rows, ignore_index=True)
                          if group_rows else pd.DataFrame(), cube=cube,
                          verdicts=cube["verdict"].tolist() if len(cube) else [])


def ablation_report(
    *, runs: Sequence[ExperimentRun], groundtruth: pd.DataFrame, label_map: Mapping[int, str],
    excluded: pd.DataFrame | None, baseline: Mapping[str, object] = BASELINE,
    resamples: int = 1000, confidence: float = 0.95, seed: int = 0,
    empty_keyframes: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """full_report's overall table: one row per configuration, its keys, seeds,
    mAP_mean, mAP_low, mAP_high (t-interval over seeds) and, for runs with
    predictions, paired_seeds, diff, diff_low, diff_high against ``baseline``."""
    return full_report(runs=runs, groundtruth=groundtruth, label_map=label_map,
                       excluded=excluded, baseline=baseline, resamples=resamples,
                       confidence=confidence, seed=seed, empty_keyframes=empty_keyframes).overall


def _run_metrics(run: ExperimentRun, groundtruth, label_map, excluded, empty_keyframes,
                 groups) -> dict[str, float]:
    if run.predictions is None:
        if run.mAP is None:
            raise ValueError(f"run {dict(run.config)} seed {run.seed} has neither predictions "
                             "nor mAP")
        return {"mAP": float(run.mAP)}
    result = evaluate_frame_map(groundtruth=groundtruth, detections=run.predictions,
                                label_map=label_map, excluded=excluded,
                                empty_keyframes=empty_keyframes)
    found = metrics_dict(result, groups=groups or {})
    found.pop("classes_with_gt")
    return {k: math.nan if v is None else v for k, v in found.items()}


def _with_differences(table, scores, runs, baseline, confidence, metric, columns):
    if not runs:
        return table
    diffs = paired_differences(scores, runs, baseline=baseline, confidence=confidence,
                               metric=metric)
    if not len(diffs):
        return table
    merged = table.merge(diffs, on=columns, how="left")
    return merged.astype({"paired_seeds": "Int64"})  # the baseline rows have none


def cube_versus_best(scores: dict, runs: Sequence[ExperimentRun], *,
                     confidence: float = 0.95) -> pd.DataFrame:
    """Cube-Fusion against the best (by mean mAP over seeds) of serial / dense /
    parallel, among runs that agree on every other config key (e.g. pose_part).

    scores: score_runs' of runs. One row per such setting that has cube and rival
    runs: the other keys, best (the rival's fusion), cube_mAP, best_mAP (means over
    seeds), paired_seeds, diff (cube - best), diff_low, diff_high (paired bootstrap),
    verdict (a sentence). The best is chosen on the same data, which favours it.
    """
    rows = []
    for others, settings in _settings(runs).items():
        means = {fusion: np.mean([scores[(key, seed)][0]["mAP"] for key, seed in scores
                                  if key == config_key(config)])
                 for fusion, config in settings.items()}
        rivals = [f for f in RIVALS if f in means]
        if CANDIDATE not in means or not rivals:
            continue
        best = max(rivals, key=lambda fusion: means[fusion])
        keys = {config_key(config) for config in settings.values()}
        diffs = paired_differences(scores, [r for r in runs if config_key(r.config) in keys],
                                   baseline=settings[best], confidence=confidence)
        mine = diffs[diffs["fusion"] == CANDIDATE].iloc[0]
        row = {**dict(others), "best": best, "cube_mAP": means[CANDIDATE],
               "best_mAP": means[best], "paired_seeds": int(mine["paired_seeds"]),
               "diff": mine["diff"], "diff_low": mine["diff_low"], "diff_high": mine["diff_high"]}
        rows.append({**row, "verdict": _verdict(row, others, confidence)})
    return pd.DataFrame(rows)


def _settings(runs: Sequence[ExperimentRun]) -> dict[tuple, dict[str, dict]]:
    """{other config items: {fusion: config}} of runs that have a fusion key."""
    found: dict[tuple, dict[str, dict]] = {}
    for run in runs:
        config = dict(run.config)
        if "fusion" in config:
            others = tuple(sorted((k, v) for k, v in config.items() if k != "fusion"))
            found.setdefault(others, {})[config["fusion"]] = config
    return found


def _verdict(row: dict, others: tuple, confidence: float) -> str:
    where = ", ".join(f"{k}={v}" for k, v in others)
    subject = f"Cube-Fusion{f' ({where})' if where else ''}"
    rival = f"the best of serial / dense / parallel ({row['best']}, mAP {row['best_mAP']:.4f})"
    if not row["paired_seeds"] or math.isnan(row["diff_low"]):
        return (f"Cannot say whether {subject} beats {rival} on this data: no seed was run "
                f"for both (cube mAP {row['cube_mAP']:.4f}).")
    numbers = (f"mAP {row['cube_mAP']:.4f}, difference {row['diff']:+.4f} "
               f"({confidence:.0%} CI {row['diff_low']:+.4f} to {row['diff_high']:+.4f}, "
               f"{row['paired_seeds']} paired seeds)")
    if row["diff_low"] > 0:
        return f"Yes: {subject} beats {rival} on this data: {numbers}."
    if row["diff_high"] < 0:
        return f"No: {subject} is worse than {rival} on this data: {numbers}."
    return (f"No: {subject} does not beat {rival} on this data; the CI of the difference "
            f"includes 0: {numbers}.")


def format_report(report: AblationReport, *, baseline: Mapping[str, object] = BASELINE,
                  confidence: float = 0.95) -> str:
    """The report as text: the overall table, the class-group table, the verdicts."""
    base = ", ".join(f"{k}={v}" for k, v in baseline.items())
    parts = [f"mAP per configuration: mean and {confidence:.0%} t-interval over seeds; diff "
             f"from {base} with a paired bootstrap {confidence:.0%} CI over val keyframes",
             _table(report.overall)]
    if len(report.groups):
        parts += ["", "AP per class group (mean over the group's classes with GT), the same "
                  "statistics", _table(report.groups)]
    if report.verdicts:
        parts += ["", "Cube-Fusion against the best of serial / dense / parallel:"]
        parts += [f"- {verdict}" for verdict in report.verdicts]
    return "\n".join(parts)


def _table(table: pd.DataFrame) -> str:
    with pd.option_context("display.width", 250, "display.max_columns", None,
                           "display.float_format", "{:.4f}".format):
        return table.to_string(index=False)
