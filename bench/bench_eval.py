"""Benchmark of the frame-mAP evaluator on an AVA-val-sized result file.

Generates, deterministically, ground truth for ~57k keyframes (2-3 boxes each,
1-3 of the 60 evaluated actions per box; 3% of the keyframes annotated with no
boxes, as two-column rows; the last video left out of the ground truth) and a
result file with the 50 highest-scoring (box, action) rows per keyframe (~2.9M
rows, scores with four decimals so ties occur as in real files). Then it
evaluates from the files as ``avapipe eval`` does and prints wall time and
peak RSS, and, on a subsample small enough for the slow reference (which
follows the official rules too), the speed ratio and the largest AP
difference. ``--result-file`` instead writes an AVA-val-sized challenge result
file from model-like float32 scores (every class of every person) and prints
its rows and size.

    python bench/bench_eval.py [--videos 64] [--subsample-videos 8]
    python bench/bench_eval.py --result-file [--videos 64] [--persons 3]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from avapipe.data import ava
from avapipe.evaluation.frame_map import evaluate_files, evaluate_frame_map
from avapipe.evaluation.official_reader import challenge_rows
from avapipe.evaluation.reference import reference_frame_map

LABEL_MAP = Path(__file__).parents[1] / "tests/data/ava_action_list_v2.1_for_activitynet_2018.pbtxt.txt"
KEYFRAME_SECONDS = np.arange(902, 1799)  # 897 keyframes per AVA movie
ROWS_PER_KEYFRAME = 50


def generate(folder: Path, n_videos: int, seed: int = 0) -> None:
    """Writes groundtruth.csv, detections.csv and labelmap.pbtxt into ``folder``."""
    rng = np.random.default_rng(seed)
    labels = ava.read_label_map(LABEL_MAP)
    action_ids = np.array(sorted(labels))
    video = np.repeat([f"vid{v:08d}xx" for v in range(n_videos)], len(KEYFRAME_SECONDS))
    second = np.tile(KEYFRAME_SECONDS, n_videos)
    n_boxes = rng.integers(2, 4, len(video))
    box_kf = np.repeat(np.arange(len(video)), n_boxes)
    boxes = _random_boxes(rng, len(box_kf))
    n_actions = rng.integers(1, 4, len(box_kf))
    gt_box = np.repeat(np.arange(len(box_kf)), n_actions)
    gt = _rows(video, second, box_kf[gt_box], boxes[gt_box])
    gt["action_id"] = rng.choice(action_ids, len(gt_box))
    gt["person_id"] = gt_box - np.searchsorted(box_kf, box_kf[gt_box])
    # Keyframes annotated with no boxes (their detections are false positives)
    # and a last video without ground truth (its detections are ignored).
    empty = rng.random(len(video)) < 0.03
    scored = ~empty & (video != video[-1])
    keyframes = pd.DataFrame({"video_id": video, "timestamp": second})
    ava.write_groundtruth_csv(folder / "groundtruth.csv", rows=gt[scored[box_kf[gt_box]]],
                              empty_keyframes=keyframes[empty & (video != video[-1])])
    ava.write_label_map(folder / "labelmap.pbtxt", labels=labels)
    det = _detections(rng, video, second, box_kf, boxes, action_ids, gt_box, gt["action_id"])
    ava.write_results_csv(folder / "detections.csv", rows=det)


def _random_boxes(rng, n: int) -> np.ndarray:
    corner = rng.uniform(0, 0.6, (n, 2))
    size = rng.uniform(0.1, 0.4, (n, 2))
    return np.round(np.hstack([corner, np.minimum(corner + size, 1.0)]), 3)


def _rows(video, second, keyframe, boxes) -> pd.DataFrame:
    return pd.DataFrame({"video_id": video[keyframe], "timestamp": second[keyframe],
                         "x1": boxes[:, 0], "y1": boxes[:, 1],
                         "x2": boxes[:, 2], "y2": boxes[:, 3]})


def _detections(rng, video, second, box_kf, boxes, action_ids, gt_box, gt_action
                ) -> pd.DataFrame:
    """Per GT box a jittered detection, scored for every action (higher for its
    true actions); the 50 best rows of each keyframe are kept, as a real
    system's output is."""
    jitter = np.clip(boxes + rng.normal(0, 0.03, boxes.shape), 0, 1)
    jitter[:, 2:] = np.maximum(jitter[:, 2:], jitter[:, :2] + 0.01)
    det_box = np.repeat(np.arange(len(box_kf)), len(action_ids))
    det = _rows(video, second, box_kf[det_box], np.round(np.minimum(jitter, 1)[det_box], 3))
    det["action_id"] = np.tile(action_ids, len(box_kf))
    score = rng.beta(0.5, 4, len(det))
    is_true = np.zeros((len(box_kf), action_ids.max() + 1), dtype=bool)
    is_true[gt_box, gt_action] = True
    score += 0.4 * is_true[det_box, det["action_id"]]
    det["score"] = np.round(np.minimum(score, 1.0), 4)
    rank = det.groupby(box_kf[det_box], sort=False)["score"].rank(ascending=False, method="first")
    return det[rank.to_numpy() <= ROWS_PER_KEYFRAME].reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=64)
    parser.add_argument("--subsample-videos", type=int, default=8)
    parser.add_argument("--result-file", action="store_true",
                        help="measure the challenge result file instead")
    parser.add_argument("--persons", type=int, default=3, help="per keyframe (--result-file)")
    parser.add_argument("--generate-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.result_file:
        result_file(args.videos, args.persons)
        return
    if args.generate_only:
        generate(args.generate_only, args.videos)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        # a child process generates, so the peak RSS below is the evaluation's
        subprocess.run([sys.executable, __file__, "--videos", str(args.videos),
                        "--generate-only", str(folder)], check=True)
        print(f"generated in {time.perf_counter() - start:.1f} s")
        full(folder)
        subsample(folder, args.subsample_videos)


def full(folder: Path) -> None:
    start, cpu_start = time.perf_counter(), time.process_time()
    result = evaluate_files(labelmap=folder / "labelmap.pbtxt",
                            groundtruth=folder / "groundtruth.csv",
                            detections=folder / "detections.csv")
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    n_rows = sum(1 for _ in open(folder / "detections.csv"))
    print(f"evaluate_files: {n_rows} detection rows, mAP {result.mAP:.6f}, "
          f"{result.num_classes_with_gt} classes with GT")
    # CPU time too: on a shared machine the wall time depends on the load
    print(f"wall {wall:.1f} s, CPU {cpu:.1f} s, peak RSS {peak_gib:.2f} GiB")


def subsample(folder: Path, n_videos: int) -> None:
    truth = ava.read_groundtruth_csv(folder / "groundtruth.csv")
    det = ava.read_results_csv(folder / "detections.csv").rows
    videos = sorted(truth.rows["video_id"].unique())[:n_videos]
    foreign = sorted(set(det["video_id"]) - set(truth.rows["video_id"])
                     - set(truth.empty_keyframes["video_id"]))
    gt = truth.rows[truth.rows["video_id"].isin(videos)]
    empty = truth.empty_keyframes[truth.empty_keyframes["video_id"].isin(videos)]
    det = det[det["video_id"].isin(videos + foreign[:1])]
    labels = ava.read_label_map(folder / "labelmap.pbtxt")
    tables = {"groundtruth": gt, "detections": det, "empty_keyframes": empty}
    fast_s, fast = _timed(lambda: evaluate_frame_map(**tables, label_map=labels), repeat=3)
    slow_s, (slow_map, slow) = _timed(
        lambda: reference_frame_map(**tables, label_ids=set(labels)), repeat=1)
    worst = max(abs(fast.per_class[c] - ap) for c, ap in slow.items())
    print(f"subsample of {n_videos} videos + 1 without GT ({len(det)} rows): "
          f"fast {fast_s:.2f} s, reference {slow_s:.2f} s, slow/fast {slow_s / fast_s:.0f}x, "
          f"mAP {fast.mAP:.9f} vs {slow_map:.9f}, largest AP difference {worst:.1e}")


def _timed(call, repeat: int):
    """(best CPU seconds of ``repeat`` runs, result): CPU time, as the machine is shared."""
    times = []
    for _ in range(repeat):
        start = time.process_time()
        result = call()
        times.append(time.process_time() - start)
    return min(times), result


def result_file(n_videos: int, persons: int, n_classes: int = 60) -> None:
    """Model-like predictions for every class of every person (float32 sigmoid
    scores and boxes), written uncapped and as the challenge file (top 50)."""
    rng = np.random.default_rng(0)
    n_keyframes = n_videos * len(KEYFRAME_SECONDS)
    kf = np.repeat(np.arange(n_keyframes), persons * n_classes)
    video = np.array([f"vid{v:08d}xx" for v in range(n_videos)])
    n_boxes = n_keyframes * persons
    boxes = _random_boxes(rng, n_boxes) + rng.uniform(0, 1e-3, (n_boxes, 4))
    boxes = np.clip(boxes, 0, 1).astype(np.float32).astype(np.float64)
    logits = rng.normal(-3, 2, len(kf)).astype(np.float32)
    rows = pd.DataFrame({
        "video_id": video[kf // len(KEYFRAME_SECONDS)],
        "timestamp": KEYFRAME_SECONDS[kf % len(KEYFRAME_SECONDS)],
        **{c: boxes[np.arange(len(kf)) // n_classes, i] for i, c in enumerate(ava.BOX_COLUMNS)},
        "action_id": np.tile(np.arange(1, n_classes + 1), n_keyframes * persons),
        "score": (1 / (1 + np.exp(-logits))).astype(np.float64),
    })
    with tempfile.TemporaryDirectory() as tmp:
        for top_k in (50, 0):
            start = time.perf_counter()
            written = challenge_rows(rows, label_ids=range(1, n_classes + 1), top_k=top_k)
            path = Path(tmp) / f"top{top_k}.csv"
            ava.write_results_csv(path, rows=written)
            peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            print(f"top_k={top_k}: {len(written)} rows, {path.stat().st_size / 1e6:.0f} MB "
                  f"({n_keyframes} keyframes x {persons} persons x {n_classes} classes), "
                  f"selected and written in {time.perf_counter() - start:.0f} s, "
                  f"peak RSS so far {peak_gib:.1f} GiB")
            path.unlink()


if __name__ == "__main__":
    main()
