"""Benchmark the phantom generator (a benchmark script, not a test).

Generates the default cohort (125 subjects, 224x224, 30 frames -> 621 scans) into a
temporary folder (or ``--out``) and prints seconds, scans/s, bytes on disk and the
MVO statistics from dataset.json.

    python benchmarks/bench_phantom.py                 # default cohort, workers=min(2, CPUs)
    python benchmarks/bench_phantom.py --subjects 20 --workers 1
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path


def _cpu_per_scan(a: argparse.Namespace, n: int) -> float:
    """CPU seconds per scan for the first ``n`` scans, rendered and written in this process."""
    from ssnet.data.phantom import _render_job, _worker_init, plan_cohort

    _worker_init()
    with tempfile.TemporaryDirectory(prefix="bench_phantom_cpu_") as d:
        jobs = [(d, subj, sl, a.size, a.frames, 0.0, False, a.seed)
                for subj in plan_cohort(a.subjects, a.seed, a.difficulty) for sl in subj.slices][: n + 1]
        (Path(d) / "cines").mkdir()
        (Path(d) / "labels").mkdir()
        _render_job(jobs[0])  # warm-up (imports, allocator)
        t0 = time.process_time()
        for job in jobs[1:]:
            _render_job(job)
        return (time.process_time() - t0) / max(1, len(jobs) - 1)


def main(argv: list[str] | None = None) -> int:
    from ssnet.data.phantom import generate_phantom

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--subjects", type=int, default=125)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--frames", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--difficulty", default="paper")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--out", type=Path, help="keep the dataset here (default: a temporary folder, removed)")
    p.add_argument("--cpu-sample", type=int, default=24,
                   help="also time this many scans in-process (CPU seconds), to estimate an idle-machine run")
    a = p.parse_args(argv)

    tmp = None
    out = a.out
    if out is None:
        tmp = tempfile.mkdtemp(prefix="bench_phantom_")
        out = Path(tmp) / "phantom"
    try:
        t0 = time.perf_counter()
        generate_phantom(out, subjects=a.subjects, size=a.size, frames=a.frames, seed=a.seed,
                         difficulty=a.difficulty, workers=a.workers, force=True)
        seconds = time.perf_counter() - t0
        nbytes = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        meta = json.loads((out / "dataset.json").read_text())
        summ = meta["summary"]
        pos = [s for s in meta["scans"] if s["has_mvo"]]
        mvo_px = sorted(s["mvo_px"] for s in pos)
        share = sorted(s["mvo_px"] / s["myocardium_px"] for s in pos)
        workers = a.workers or min(2, os.cpu_count() or 1)
        print(f"subjects={summ['subjects']} scans={summ['scans']} size={a.size} frames={a.frames} "
              f"difficulty={a.difficulty} workers={workers} cpus={os.cpu_count()}")
        print(f"seconds={seconds:.1f} scans_per_s={summ['scans'] / seconds:.1f} bytes_on_disk={nbytes} "
              f"({nbytes / 2**20:.1f} MiB)")
        if pos:
            q = lambda v, f: v[min(len(v) - 1, int(f * len(v)))]  # noqa: E731
            print(f"mvo_subjects={summ['mvo_subjects']} mvo_scans={len(pos)} mvo_scan_share={len(pos) / summ['scans']:.3f}")
            print(f"mvo_px per positive scan: median={q(mvo_px, 0.5)} p10={q(mvo_px, 0.1)} p90={q(mvo_px, 0.9)} "
                  f"mean={sum(mvo_px) / len(mvo_px):.1f}")
            print(f"mvo share of myocardium: median={q(share, 0.5):.3f} p10={q(share, 0.1):.3f} p90={q(share, 0.9):.3f}")
        if a.cpu_sample > 0:
            cpu_per_scan = _cpu_per_scan(a, n=min(a.cpu_sample, summ["scans"]))
            print(f"cpu_s_per_scan={cpu_per_scan:.3f} (render + label + write, one process); "
                  f"estimated idle-machine seconds with {workers} workers: {cpu_per_scan * summ['scans'] / workers:.1f}")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
