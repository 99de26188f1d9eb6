"""Benchmark the scale-out: the same study run by 1 worker and by 2 workers on this machine.

Each way runs `harness worker` processes on a fresh journal-file study (Optuna's storage for several
workers on one machine) with the tiny test protocol and glyphs, until the record is written. The
machine's cores are split between the workers (--jobs cores / workers, each training on one thread),
so both ways use the same cores. Prints each way's wall time, the 2-worker / 1-worker ratio, and checks that both
ways ran exactly the protocol's trials and the same number of test units.

    python benchmarks/workers.py [--trials 6 --reps 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
TINY = REPO / "tests" / "tiny.toml"


def _run_workers(workers: int, *, trials: int, reps: int, data_root: Path, work: Path) -> tuple[float, dict]:
    jobs = max(1, len(os.sched_getaffinity(0)) // workers)
    command = [sys.executable, "-m", "harness.cli", "worker", "--loss", "batch_hard", "--protocol", str(TINY),
               "--trials", str(trials), "--reps", str(reps), "--data-root", str(data_root),
               "--results", str(work / "results"), "--reports", str(work / "reports"),
               "--storage", f"journal:{work / 'results' / 'studies.journal'}", "--no-progress", "--jobs", str(jobs)]
    started = time.perf_counter()
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(workers)]
    for process in processes:
        _, err = process.communicate()
        if process.returncode:
            raise SystemExit(f"a worker failed:\n{err}")
    wall = time.perf_counter() - started
    (record_path,) = (work / "results" / "runs").glob("*/record.json")
    return wall, json.loads(record_path.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--reps", type=int, default=2)
    args = parser.parse_args()

    from harness.image.data import load_dataset

    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        data_root = Path(tmp) / "data"
        load_dataset("glyphs", image_size=16, root=data_root, progress=False)  # rendered once, outside the timing
        print(f"tiny protocol, batch_hard on glyphs, {args.trials} trials x 4 folds + {args.reps} reproductions "
              f"x 4 test units, journal storage, {os.cpu_count()} cores split between the workers")
        walls = {}
        for workers in (1, 2):
            wall, record = _run_workers(workers, trials=args.trials, reps=args.reps, data_root=data_root,
                                        work=Path(tmp) / f"w{workers}")
            complete = sum(t["state"] == "COMPLETE" for t in record["search"]["trials"])
            pids = {t["worker"]["pid"] for t in record["search"]["trials"]}
            units = sum(len(rep["folds"]) for rep in record["test"]["reproductions"])
            asked = len(record["search"]["trials"])
            print(f"{workers} worker(s): {wall:7.1f} s  complete trials {complete} (of {asked} asked), "
                  f"by {len(pids)} process(es); test units {units}")
            if complete != args.trials or units != 4 * args.reps:
                raise SystemExit("the trial or unit count is not the protocol's")
            walls[workers] = wall
        print(f"ratio 2 workers / 1 worker: {walls[2] / walls[1]:.2f} (below 1: the second worker pays off)")


if __name__ == "__main__":
    main()
