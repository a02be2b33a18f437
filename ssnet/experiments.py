"""Paper tables end to end: phantom (cached) → split → train every row (finished runs reused)
→ shared scorer → per-case CSV, summary, paired statistics and the table (CSV, Markdown, LaTeX).

``ssnet reproduce table1|table2|table3 [--profile quick|paper|smoke] [--seeds 0,1,2] [--data DIR]``
is what ``./reproduce.sh table1`` runs. Runs live in ``<out>/runs``; a run whose folder holds a
``done`` run.json for the same config hash is reused, an interrupted one resumes.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ssnet import registry
from ssnet.engine.config import CONFIG_DIR, compose, config_hash
from ssnet.engine.runs import is_done, read_run
from ssnet.errors import SsnetError
from ssnet.io import atomic_write_csv

# Table 1 order of the paper; registered models not listed here follow, alphabetically, before SSNet.
PAPER_ORDER = ["unet", "unetpp", "transunet", "swinunetr", "afb_urr", "dpstt", "pns_plus", "vivim"]
OURS = "ssnet"
ABLATION_CONFIGS = ["ssnet_static_only", "ssnet_late_fusion", "ssnet_motion_guided", "ssnet_no_refinement", "ssnet"]
ABLATION_COLUMNS = ["static_encoder", "motion_encoder", "guided_decoder", "uncertainty_refinement"]
FRAME_COUNTS = [5, 10, 15, 30]


@dataclass
class Job:
    """One table row: a method id, its Hydra overrides, and the table's extra columns."""

    method: str
    label: str
    overrides: list[str]
    columns: dict[str, str] = field(default_factory=dict)


def model_config(key: str) -> dict:
    """``configs/model/<key>.yaml`` as Hydra composes it (in-group defaults merged)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(compose([f"model={key}"]).model, resolve=True)


def table1_jobs() -> list[Job]:
    """Every registered model that has a same-named model config; SSNet last."""
    available = [n for n in registry.names() if (CONFIG_DIR / "model" / f"{n}.yaml").exists()]
    ordered = [n for n in PAPER_ORDER if n in available]
    ordered += sorted(n for n in available if n not in PAPER_ORDER and n != OURS)
    ordered += [OURS] if OURS in available else []
    jobs = []
    for name in ordered:
        entry = registry.get(name)
        label = model_config(name).get("display_name") or entry.label
        jobs.append(Job(name, label, [f"model={name}"], {"input": entry.kind.capitalize()}))
    return jobs


def table2_jobs() -> list[Job]:
    jobs = []
    for key in ABLATION_CONFIGS:
        if not (CONFIG_DIR / "model" / f"{key}.yaml").exists():
            raise SsnetError(f"{CONFIG_DIR / 'model' / (key + '.yaml')}: ablation config missing (Table 2 needs SSNet)")
        cfg = model_config(key)
        flags = cfg.get("ablation") or {}
        cols = {c: "✓" if flags.get(c) else "✗" for c in ABLATION_COLUMNS}
        jobs.append(Job(key, cfg.get("display_name") or key, [f"model={key}"], cols))
    return jobs


def table3_jobs() -> list[Job]:
    if not (CONFIG_DIR / "model" / f"{OURS}.yaml").exists():
        raise SsnetError(f"{CONFIG_DIR / 'model' / 'ssnet.yaml'}: missing (Table 3 needs SSNet)")
    return [Job(f"ssnet_T{t}", f"SSNet, T = {t}", [f"model={OURS}", f"data.frames={t}", f"method=ssnet_T{t}"], {"frames": str(t)})
            for t in FRAME_COUNTS]


JOBS = {"table1": table1_jobs, "table2": table2_jobs, "table3": table3_jobs}


def ensure_phantom(data_dir: Path, difficulty: str) -> None:
    """Generate the default phantom (at ``difficulty``) into ``data_dir`` unless a dataset is already there."""
    if (data_dir / "manifest.csv").exists():
        return
    from ssnet.data.phantom import generate_phantom

    start = time.perf_counter()
    print(f"generating the default phantom ({difficulty}) in {data_dir} ...", file=sys.stderr)
    generate_phantom(data_dir, difficulty=difficulty)
    print(f"phantom ready in {time.perf_counter() - start:.1f} s", file=sys.stderr)


def ensure_paper_split(data_dir: Path) -> None:
    """The shared split: the paper's 443/63/115 scan counts when the cohort has 621 scans."""
    from ssnet.data.contract import read_manifest
    from ssnet.data.split import PAPER_SCANS, make_split

    if (data_dir / "split.csv").exists():
        return
    n = len(read_manifest(data_dir))
    make_split(data_dir, seed=0, target_scans=PAPER_SCANS if n == sum(PAPER_SCANS) else None)


def run_job(job: Job, base: list[str], seed: int) -> Path:
    """Train (or reuse) one row at one seed; return the run folder."""
    from ssnet.engine.train import train

    overrides = base + job.overrides + [f"seed={seed}"]
    cfg = compose(overrides)
    name = f"{cfg.get('method') or cfg.model.key}-{cfg.profile.name}-s{seed}-{config_hash(cfg)}"
    run_dir = Path(cfg.run_root) / name
    if is_done(run_dir) and (run_dir / "per_case.csv").exists():
        print(f"reusing {run_dir}", file=sys.stderr)
        return run_dir
    print(f"training {job.method} (seed {seed}) -> {run_dir}", file=sys.stderr)
    return train(cfg, overrides)


def reproduce(kind: str, profile: str, seeds: list[int], data_dir: Path | None, out_dir: Path, with_paper: bool = True,
              extra: list[str] | None = None) -> dict[str, Path]:
    """Build one paper table end to end; return the written files.

    Without ``data_dir`` the profile's default phantom is used (generated once, then cached).
    """
    from ssnet.evaluation import stats, tables
    from ssnet.evaluation.score import read_per_case

    jobs = JOBS[kind]()
    if data_dir is None:
        data_cfg = compose([f"profile={profile}", *(extra or [])]).data
        data_dir = Path(data_cfg.dir)
        ensure_phantom(data_dir, str(data_cfg.phantom_difficulty))
    elif not (data_dir / "manifest.csv").exists():
        raise SsnetError(f"{data_dir / 'manifest.csv'}: dataset not found")
    ensure_paper_split(data_dir)
    base = [f"profile={profile}", f"data.dir={data_dir}", f"run_root={out_dir / 'runs'}"] + list(extra or [])
    frames, efficiency = [], {}
    for job in jobs:
        for seed in seeds:
            run_dir = run_job(job, base, seed)
            frames.append(read_per_case(run_dir / "per_case.csv"))
            info = read_run(run_dir)
            efficiency.setdefault(job.method, (info.get("params"), info.get("gflops_per_clip"), info.get("ms_per_clip")))
    per_case = pd.concat(frames, ignore_index=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {"per_case": out_dir / f"{kind}_per_case.csv", "summary": out_dir / f"{kind}_summary.csv"}
    atomic_write_csv(per_case, written["per_case"])
    atomic_write_csv(stats.summarize(per_case), written["summary"])
    rows = []
    for job in jobs:
        cols = dict(job.columns)
        params, gflops, ms = efficiency.get(job.method, (None, None, None))
        if kind == "table1" and params:
            cols["params_m"] = f"{params / 1e6:.2f}"
            cols["gflops"] = f"{gflops:.1f}" if gflops is not None else ""
            cols["ms_per_clip"] = f"{ms:.1f}" if ms is not None else ""
        rows.append(tables.TableRow(job.method, job.label, cols))
    ours = OURS if kind == "table1" else jobs[-1].method if kind == "table2" else None
    written.update(tables.write_table(kind, per_case, rows, ours, out_dir, stem=kind, with_paper=with_paper))
    if ours is not None and len(jobs) > 1:
        written["stats"] = out_dir / f"{kind}_stats.csv"
        both = [stats.paired_stats(per_case, ours, protocol=p) for p in ("paper", "strict")]
        atomic_write_csv(pd.concat(both, ignore_index=True), written["stats"])
    return written


def main(argv: list[str]) -> int:
    if argv[:1] == ["sunnybrook"]:  # the real-data benchmark (ssnet/sunnybrook.py)
        from ssnet.sunnybrook import main as sunnybrook_main

        return sunnybrook_main(argv[1:])
    parser = argparse.ArgumentParser(prog="ssnet reproduce", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", choices=sorted(JOBS))
    parser.add_argument("--profile", default="quick", choices=["smoke", "quick", "paper", "authors_code"])
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default: 0 for quick/smoke, 0,1,2 for paper)")
    parser.add_argument("--data", type=Path, default=None, help="dataset folder (default: the profile's phantom, data/phantom-<difficulty>)")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default: results/<profile>)")
    parser.add_argument("--no-paper", action="store_true", help="omit the paper's published numbers from the tables")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides applied to every run")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in (args.seeds or ("0,1,2" if args.profile == "paper" else "0")).split(",")]
    out = args.out or Path("results") / args.profile
    start = time.perf_counter()
    written = reproduce(args.table, args.profile, seeds, args.data, out, with_paper=not args.no_paper, extra=args.overrides)
    for key, path in written.items():
        print(f"{key}: {path}")
    md = written.get("md")
    if md and Path(md).exists():
        print(Path(md).read_text())
    print(f"{args.table} done in {time.perf_counter() - start:.0f} s")
    return 0
