"""The ``avapipe`` command line: every DVC stage is ``avapipe extract <stage>``."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import click

from stages.params import PARAMS_FILE, load_params

# Stage name → module with ``run(params)``; imported on use so that
# ``avapipe --help`` does not pay for torch / OpenMMLab imports.
STAGES = {
    "prepare": "stages.prepare",
    "detect": "stages.detect",
    "pose": "stages.pose",
    "parts": "stages.parts",
    "pretrain": "stages.pretrain",
    "features": "stages.features",
    "memory": "stages.memory",
    "train": "stages.train",
    "evaluate": "stages.evaluate",
}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """avapipe: spatio-temporal action localization (AVA) as a DVC pipeline."""


def _run_stage(name: str, params_file: Path) -> None:
    from stages.records import check_unchanged

    params = load_params(params_file)  # bad params fail before the stage's heavy imports
    importlib.import_module(STAGES[name]).run(params)
    # Another process (a second `dvc exp run`) may have rewritten params.yaml
    # meanwhile; DVC would then record the new values for outputs made with
    # the old ones.
    check_unchanged(name, params, load_params(params_file))


@main.command()
@click.argument("stage", type=click.Choice(list(STAGES)))
@click.option("--params", "params_file", type=click.Path(path_type=Path),
              default=PARAMS_FILE, show_default=True)
def extract(stage: str, params_file: Path) -> None:
    """Run one pipeline STAGE with the settings in params.yaml."""
    _run_stage(stage, params_file)


@main.command()
@click.option("--params", "params_file", type=click.Path(path_type=Path),
              default=PARAMS_FILE, show_default=True)
def train(params_file: Path) -> None:
    """Train the classifier on cached features (the `train` stage)."""
    _run_stage("train", params_file)


@main.command()
@click.option("--params", "params_file", type=click.Path(path_type=Path),
              default=PARAMS_FILE, show_default=True)
def evaluate(params_file: Path) -> None:
    """Predict on val and compute frame-mAP (the `evaluate` stage)."""
    _run_stage("evaluate", params_file)


@main.command()
def doctor() -> None:
    """Print the versions of the stack; exit 1 if a required piece is missing."""
    from avapipe.doctor import run_checks

    failed = False
    for check in run_checks():
        mark = "ok " if check.ok else ("-- " if not check.required else "FAIL")
        click.echo(f"{mark:4} {check.name:13} {check.detail}")
        if not check.ok and check.required:
            failed = True
            click.echo(f"     fix: {check.fix}")
    sys.exit(1 if failed else 0)


@main.command("eval")
@click.option("--labelmap", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--groundtruth", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--detections", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--exclusions", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "json_out", type=click.Path(path_type=Path),
              help="also write {mAP, per_class} to this file")
def eval_command(labelmap, groundtruth, detections, exclusions, json_out) -> None:
    """Frame-mAP@0.5 of an AVA result CSV, as the official evaluator computes it."""
    from avapipe.evaluation.frame_map import evaluate_files

    result = evaluate_files(
        labelmap=labelmap, groundtruth=groundtruth, detections=detections,
        exclusions=exclusions,
    )
    report = result.to_json_dict()
    for class_id, ap in report["per_class"].items():
        click.echo(f"class {class_id:>4}: " + ("  n/a (no GT)" if ap is None else f"{ap:.4f}"))
    mean_ap = report["mAP"]
    click.echo("frame-mAP@0.5: " + ("n/a (no ground truth)" if mean_ap is None else f"{mean_ap:.6f}"))
    if json_out:
        Path(json_out).write_text(json.dumps(report, indent=2) + "\n")


@main.command()
@click.argument("results", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path))
@click.option("--weights", type=str, help="comma-separated, one per file")
@click.option("--iou", "iou_threshold", default=0.5, show_default=True,
              help="boxes of different files with IoU >= this are the same box")
@click.option("--top-k", default=50, show_default=True, type=click.IntRange(min=0),
              help="rows per keyframe written, those the official evaluator keeps (0: all)")
@click.option("--labelmap", type=click.Path(exists=True, path_type=Path),
              help="write only these classes (as the evaluator, before the top-k)")
def ensemble(results, output, weights, iou_threshold, top_k, labelmap) -> None:
    """Average the scores of several AVA result CSVs into OUTPUT."""
    from avapipe.data.ava import read_label_map, read_results_csv, write_results_csv
    from avapipe.evaluation.ensemble import ensemble_results
    from avapipe.evaluation.official_reader import challenge_rows

    parsed = [float(w) for w in weights.split(",")] if weights else None
    if parsed is not None and len(parsed) != len(results):
        raise click.BadParameter(
            f"{len(parsed)} weights for {len(results)} files", param_hint="--weights"
        )
    tables = [read_results_csv(path, whole_seconds=False).rows for path in results]
    merged = ensemble_results(tables, weights=parsed, iou_threshold=iou_threshold)
    label_ids = read_label_map(labelmap) if labelmap else None
    rows = challenge_rows(merged, label_ids=label_ids, top_k=top_k)
    write_results_csv(output, rows=rows)
    click.echo(f"wrote {len(rows)} rows to {output}")


@main.command()
@click.option("--resamples", default=1000, show_default=True,
              help="bootstrap resamples of the val keyframes")
@click.option("--seed", default=0, show_default=True, help="of the bootstrap")
@click.option("--csv", "csv_out", type=click.Path(path_type=Path),
              help="also write the mAP table")
@click.option("--groups-csv", "groups_out", type=click.Path(path_type=Path),
              help="also write the class-group table")
@click.option("--commits", default=1, show_default=True, type=click.IntRange(min=1),
              help="the experiments of HEAD and of its last N-1 parent commits "
                   "(those commits must not change the experiments' results)")
def report(resamples: int, seed: int, csv_out: Path | None, groups_out: Path | None,
           commits: int) -> None:
    """Ablation of the DVC experiments: mAP and AP per class group (groups.csv or
    AVA's), mean ± 95% CI over seeds per (fusion, pose_part), a paired bootstrap CI
    of each one's difference from the baseline (fusion=none, pose_part=false), and
    whether Cube-Fusion beats the best of serial / dense / parallel."""
    from avapipe.evaluation.ablation import format_report
    from stages.report import experiments_report

    found = experiments_report(resamples=resamples, seed=seed, commits=commits)
    click.echo(format_report(found))
    if csv_out:
        found.overall.to_csv(csv_out, index=False)
    if groups_out:
        found.groups.to_csv(groups_out, index=False)


@main.command()
@click.option("--source", "sources", multiple=True,
              type=click.Choice(["objects", "persons", "memory", "parts"]),
              help="sources to probe (repeatable; default: all four)")
@click.option("--resamples", default=1000, show_default=True,
              help="bootstrap resamples of the val videos")
@click.option("--seed", default=0, show_default=True, help="of the bootstrap and the subsample")
@click.option("--max-train-rows", default=20000, show_default=True,
              help="fit on a random subset of this many train persons when there are more")
@click.option("--csv", "csv_out", type=click.Path(path_type=Path), help="also write the table")
def probe(sources, resamples: int, seed: int, max_train_rows: int, csv_out: Path | None) -> None:
    """Linear probe of the cached features: per class group, the AP of ridge
    classifiers on [person feature] against [person feature + source] for each
    source (the keyframe's objects, the other persons, the memory window, the
    person's parts), fitted on train and scored on val persons, with a paired
    bootstrap CI over val videos. A `*` marks a source that adds AP: evidence a
    module reading it could use and the person feature lacks."""
    from avapipe.evaluation.probe import format_probe
    from avapipe.evaluation.probe_features import SOURCES
    from stages.probe import probe_table

    table = probe_table(sources=tuple(sources) or SOURCES, resamples=resamples, seed=seed,
                        max_train_rows=max_train_rows)
    click.echo(format_probe(table))
    if csv_out:
        table.to_csv(csv_out, index=False)


@main.command()
@click.option("--out", "out_dir", default=Path("data/results/viz"), show_default=True,
              type=click.Path(path_type=Path))
@click.option("--video", "video_ids", multiple=True, help="only these videos (repeatable)")
@click.option("--split", default="val", show_default=True)
@click.option("--limit", default=8, show_default=True, help="keyframes to draw (0: all)")
@click.option("--mp4/--no-mp4", default=True, show_default=True,
              help="also write an annotated MP4 per video")
@click.option("--scale", default=0, help="upscaling of the frames (0: automatic)")
@click.option("--top-k", default=3, show_default=True)
def viz(out_dir, video_ids, split, limit, mp4, scale, top_k) -> None:
    """Draw keyframes with boxes, top actions, skeletons, parts, objects and GT."""
    from stages.viz import draw

    written = draw(out_dir=out_dir, video_ids=video_ids, split=split, limit=limit,
                   mp4=mp4, scale=scale, top_k=top_k)
    click.echo(f"wrote {len(written)} files to {out_dir}")


if __name__ == "__main__":
    main()
