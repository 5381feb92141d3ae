"""Benchmark: the head options that differ from AlphAction, on this workspace's cache.

For each fusion, each setting of (train.padding, train.attend_self) — and,
with --gammas / --memory-readers, each other focal gamma / memory reader at
the default setting — and each seed,
trains the classifier on the cached features of the last `dvc repro` (the
train stage's call, with params.yaml's other settings) and scores its val
predictions; then prints the ablation report with every setting compared with
padding=mask, attend_self=false and params.yaml's gamma and memory reader for the same fusion
(paired bootstrap over val keyframes), so the rows answer: is AlphAction's
rule better or worse here?

    dvc repro memory    # the cache, once
    python bench/bench_head_options.py [--fusions serial,cube] [--seeds 0,1,2] [--gammas 0,2]
        [--memory-readers spans]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from avapipe.data import ava
from avapipe.evaluation.ablation import format_report, full_report
from avapipe.evaluation.official_reader import challenge_rows
from avapipe.evaluation.report import ExperimentRun
from avapipe.models.blocks import MEMORY_READERS, check_memory_reader
from avapipe.models.predict import predict
from avapipe.models.train import train_classifier
from stages import labels, paths
from stages.features import STORE
from stages.memory import MEMORY
from stages.params import load_params

OPTIONS = [("mask", False), ("mask", True), ("attend", False), ("attend", True)]


def settings(*, default: dict, gammas: list[float], readers: list[str]) -> list[dict]:
    """The four (padding, attend_self) settings at the default gamma and memory
    reader, and the default setting at each other gamma and each other reader."""
    found = [{**default, "padding": p, "attend_self": a} for p, a in OPTIONS]
    found += [{**default, "gamma": g} for g in gammas if g != default["gamma"]]
    return found + [{**default, "memory_reader": r} for r in readers
                    if r != default["memory_reader"]]


def trained_run(*, fusion: str, padding: str, attend_self: bool, gamma: float,
                memory_reader: str, seed: int, params, work_dir: Path) -> ExperimentRun:
    t = params.train
    trained, evaluated = labels.trained_classes(), ava.read_label_map(paths.LABEL_MAP)
    result = train_classifier(
        store_path=STORE, memory_path=MEMORY, train_keyframes=labels.keyframes_of("train"),
        val_keyframes=labels.keyframes_of("val"), train_gt=labels.groundtruth("train"),
        val_gt=labels.groundtruth("val"), label_map=evaluated, action_ids=list(trained),
        groups=labels.groups(), exclusions=labels.exclusions(), fusion=fusion,
        pose_part=params.pose_part, hidden=t.hidden, epochs=t.epochs, lr=t.lr,
        batch_size=t.batch_size, seed=seed, device="cpu", work_dir=work_dir,
        dropout=t.dropout, gamma=gamma, optimizer=t.optimizer, fc_width=t.fc_width,
        padding=padding, attend_self=attend_self, part_pooling=t.part_pooling,
        memory_reader=memory_reader, resume=False)
    rows = predict(checkpoint=result.last_checkpoint, store_path=STORE, memory_path=MEMORY,
                   keyframes=labels.keyframes_of("val"), classes=list(evaluated))
    rows = challenge_rows(rows, label_ids=evaluated, top_k=params.evaluate.top_k)  # as evaluate
    config = {"fusion": fusion, "pose_part": params.pose_part, "padding": padding,
              "attend_self": attend_self, "gamma": gamma, "memory_reader": memory_reader}
    return ExperimentRun(config=config, seed=seed, predictions=rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fusions", default="serial,cube")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--gammas", default="", help="other focal gammas to compare")
    parser.add_argument("--memory-readers", default="",
                        help=f"other memory readers to compare ({', '.join(MEMORY_READERS)})")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = load_params()
    t = params.train
    defaults = dict(padding="mask", attend_self=False, gamma=t.gamma,
                    memory_reader=t.memory_reader)
    gammas = [float(g) for g in args.gammas.split(",") if g]
    readers = [r for r in args.memory_readers.split(",") if r]
    for reader in readers:
        check_memory_reader(reader)
    found = settings(default=defaults, gammas=gammas, readers=readers)
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        for fusion in args.fusions.split(","):
            for setting in found:
                for seed in map(int, args.seeds.split(",")):
                    start = time.perf_counter()
                    name = "_".join(map(str, [fusion, *setting.values(), seed]))
                    runs.append(trained_run(fusion=fusion, seed=seed, params=params,
                                            work_dir=Path(folder) / name, **setting))
                    print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
    truth = labels.groundtruth_csv("val")
    report = full_report(runs=runs, groundtruth=truth.rows, label_map=ava.read_label_map(
        paths.LABEL_MAP), excluded=labels.exclusions(), empty_keyframes=truth.empty_keyframes,
        groups=labels.groups(), baseline=defaults, resamples=args.resamples)
    print(format_report(report, baseline=defaults))


if __name__ == "__main__":
    main()
