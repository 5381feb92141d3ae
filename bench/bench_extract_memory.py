"""Peak memory of feature extraction for N videos against 2N videos.

Extraction holds at most a few videos' buffers at a time (the one being
filled and those queued for the writer), so its peak memory should not grow
with the number of videos. Each run is a fresh subprocess on the same kind of
videos (same clips per video); the parent prints both peaks and their ratio
(target <= 1.1), and the growth over the process's memory before extraction.

    python bench/bench_extract_memory.py --videos 4 --seconds 6 --size 96
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd


def measure(folder: Path, videos: int, args: argparse.Namespace) -> dict:
    """Runs extraction of the first ``videos`` videos in a fresh process."""
    out = subprocess.run([sys.executable, __file__, "--child", str(folder), str(videos),
                          *sys.argv[1:]], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def child(folder: Path, videos: int, args: argparse.Namespace) -> None:
    import torch

    from avapipe.features.backbone import ClipSpec, FeatureExtractor, build_slowfast
    from avapipe.features.extract import extract_features

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tables = {n: pd.read_parquet(folder / f"{n}.parquet") for n in
              ("keyframes", "persons", "objects", "parts")}
    keep = {f"v{v}" for v in range(videos)}
    tables = {n: t[t["video_id"].isin(keep)] for n, t in tables.items()}
    net = build_slowfast(depth=args.depth, width_divisor=args.width_divisor, alpha=args.alpha)
    clip = ClipSpec(num_frames=args.num_frames, stride=args.stride, alpha=args.alpha,
                    short_side=args.size)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    extract_features(**tables, extractor=FeatureExtractor(net), clip=clip,
                     store_path=folder / f"store_{videos}.zarr", batch_size=args.batch_size,
                     num_workers=args.workers, progress=False)
    print(json.dumps({
        "videos": videos, "keyframes": len(tables["keyframes"]),
        "before_mb": before / 1024,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", nargs=2, metavar=("FOLDER", "VIDEOS"), help=argparse.SUPPRESS)
    ap.add_argument("--videos", type=int, default=4, help="N: the small run; the large is 2N")
    ap.add_argument("--seconds", type=int, default=6, help="keyframes per video")
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--fps", type=int, default=12)
    ap.add_argument("--depth", type=int, default=50)
    ap.add_argument("--width-divisor", type=int, default=4)
    ap.add_argument("--num-frames", type=int, default=16)
    ap.add_argument("--stride", type=int, default=2)
    ap.add_argument("--alpha", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.child:
        child(Path(args.child[0]), int(args.child[1]), args)
        return
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_features import make_inputs

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tables = make_inputs(folder, videos=2 * args.videos, seconds=args.seconds,
                             size=args.size, fps=args.fps)
        for name, table in zip(("keyframes", "persons", "objects", "parts"), tables):
            table.to_parquet(folder / f"{name}.parquet")
        small, large = measure(folder, args.videos, args), measure(folder, 2 * args.videos, args)
    growth = [r["peak_mb"] - r["before_mb"] for r in (small, large)]
    print(json.dumps({
        "small": small, "large": large,
        "peak_ratio": round(large["peak_mb"] / small["peak_mb"], 3),
        "growth_mb": [round(g, 1) for g in growth]}, indent=1))


if __name__ == "__main__":
    main()
