"""Why unification matters, on the demo data: train the unified model, each single-dataset model, the
naive-merge model and the held-out dataset's oracle, then score every one zero-shot on demo-camvid
(a dataset none of the first four saw) and print the table.

Run: python benchmarks/zero_shot_demo.py [--iters 600] [--work-root work_dirs/zero_shot_demo]
About 12 minutes on 2 CPU cores with the defaults. Results go to WORK_ROOT/table.md too.
"""

import argparse
import time
from pathlib import Path

from unifiedseg.cli.test import build_parser, run
from unifiedseg.config import load_config
from unifiedseg.engine.launch import run_training
from unifiedseg.evaluation.metrics import format_metric

REPO = Path(__file__).resolve().parent.parent
RUNS = [  # (name, config, what it was trained on)
    ("unified", "unified.yaml", "demo-city + demo-ade, unified taxonomy"),
    ("naive merge", "naive.yaml", "demo-city + demo-ade, names merged when identical"),
    ("demo-city only", "city.yaml", "demo-city, unified taxonomy"),
    ("demo-ade only", "ade.yaml", "demo-ade, unified taxonomy"),
    ("oracle", "camvid_oracle.yaml", "demo-camvid's own train split (not zero-shot)"),
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=600, help="training iterations per model")
    parser.add_argument("--work-root", default="work_dirs/zero_shot_demo")
    parser.add_argument("--root", default="data/demo", help="demo data root (generated when absent)")
    args = parser.parse_args(argv)
    rows = []
    start = time.perf_counter()
    for name, config, trained_on in RUNS:
        work_dir = Path(args.work_root) / Path(config).stem
        path = REPO / "config" / "train" / "demo" / config
        cfg = load_config(path, [f"work_dir={work_dir}", f"data.root={args.root}", f"train.max_iters={args.iters}",
                                 "data.val.interval=0"])
        run_training(cfg)
        test_args = build_parser().parse_args(["--config", str(path), "--checkpoint", str(work_dir / "checkpoints" / "final.pth"),
                                               "--datasets", "demo-camvid", "--root", args.root,
                                               "--out", str(work_dir / "test")])
        result = run(cfg, test_args)[0]
        iou = dict(zip(result.class_names, result.matrix.iou().tolist()))
        rows.append((name, trained_on, result.miou(), iou))
    classes = list(rows[0][3])
    lines = ["| model | trained on | demo-camvid mIoU | " + " | ".join(classes) + " |",
             "|---|---|---|" + "---|" * len(classes)]
    for name, trained_on, miou, iou in rows:
        lines.append(f"| {name} | {trained_on} | **{format_metric(miou)}** | "
                     + " | ".join(format_metric(iou[c], digits=0) for c in classes) + " |")
    table = "\n".join(lines)
    minutes = (time.perf_counter() - start) / 60
    Path(args.work_root).mkdir(parents=True, exist_ok=True)
    (Path(args.work_root) / "table.md").write_text(table + f"\n\n{args.iters} iterations per model, {minutes:.1f} min in all.\n")
    print(table)
    print(f"\n{args.iters} iterations per model; {minutes:.1f} minutes in all")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
