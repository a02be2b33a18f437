"""Paper tables end to end: phantom (cached) → split → train every row (finished runs reused)
→ shared scorer → per-case CSV, summary, paired statistics and the table (CSV, Markdown, LaTeX).

``ssnet reproduce table1|table2|table3 [--profile quick|paper|smoke] [--seeds 0,1,2] [--data DIR]
[--launcher slurm|local] [overrides]`` is what ``./reproduce.sh table1`` runs. Without ``--profile``
the paper profile is used when a CUDA device is present, else quick (the choice is printed).
Runs live in ``<out>/runs`` under deterministic names (method, profile, seed, config hash); a
finished run is reused while its training code is unchanged (``ssnet/engine/provenance.py``),
otherwise retrained with a one-line reason; an interrupted one resumes. Each run is announced as
``run i/N`` with an estimated time from earlier runs' seconds per step. ``--launcher`` submits the
unfinished runs as submitit jobs (``ssnet/engine/launch.py``); a later call collects them.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ssnet import registry
from ssnet.data.contract import split_hash
from ssnet.engine.config import CONFIG_DIR, compose
from ssnet.engine.runs import find_finished, read_run, run_name
from ssnet.errors import SsnetError
from ssnet.evaluation import rerun

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


def model_job(key: str) -> Job:
    """A Table 1 row for ``configs/model/<key>.yaml``: a registered model, or a variant config of one (e.g.
    ``ssnet_paired_head``: SSNet with an option changed), labelled by its ``display_name``."""
    cfg = model_config(key)
    entry = registry.get(cfg.get("name") or key)
    return Job(key, cfg.get("display_name") or entry.label, [f"model={key}"], {"input": entry.kind.capitalize()})


def table1_jobs() -> list[Job]:
    """Every registered model that has a same-named model config; SSNet last."""
    available = [n for n in registry.names() if (CONFIG_DIR / "model" / f"{n}.yaml").exists()]
    ordered = [n for n in PAPER_ORDER if n in available]
    ordered += sorted(n for n in available if n not in PAPER_ORDER and n != OURS)
    ordered += [OURS] if OURS in available else []
    return [model_job(name) for name in ordered]


def table2_job(key: str) -> Job:
    """A Table 2 row for ``configs/model/<key>.yaml``: its display name and its ``ablation`` flags as ✓/✗."""
    cfg = model_config(key)
    flags = cfg.get("ablation") or {}
    cols = {c: "✓" if flags.get(c) else "✗" for c in ABLATION_COLUMNS}
    return Job(key, cfg.get("display_name") or key, [f"model={key}"], cols)


def table2_jobs() -> list[Job]:
    for key in ABLATION_CONFIGS:
        if not (CONFIG_DIR / "model" / f"{key}.yaml").exists():
            raise SsnetError(f"{CONFIG_DIR / 'model' / (key + '.yaml')}: ablation config missing (Table 2 needs SSNet)")
    return [table2_job(key) for key in ABLATION_CONFIGS]


def table3_jobs() -> list[Job]:
    if not (CONFIG_DIR / "model" / f"{OURS}.yaml").exists():
        raise SsnetError(f"{CONFIG_DIR / 'model' / 'ssnet.yaml'}: missing (Table 3 needs SSNet)")
    return [Job(f"ssnet_T{t}", f"SSNet, T = {t}", [f"model={OURS}", f"data.frames={t}", f"method=ssnet_T{t}"], {"frames": str(t)})
            for t in FRAME_COUNTS]


JOBS = {"table1": table1_jobs, "table2": table2_jobs, "table3": table3_jobs}


def extra_row_configs(kind: str, rows: list[str]) -> list[str]:
    """Model configs that may be added to ``kind`` as extra rows: in Table 1 any model config that is not a row,
    in Table 2 any SSNet config with ``ablation`` flags that is not a row (e.g. ``ssnet_paired_head``)."""
    keys = sorted(p.stem for p in (CONFIG_DIR / "model").glob("*.yaml") if p.stem not in rows)
    if kind == "table1":
        return keys
    if kind == "table2":
        return [k for k in keys if (cfg := model_config(k)).get("name") == OURS and cfg.get("ablation")]
    return []


EXTRA_ROW = {"table1": model_job, "table2": table2_job}


def select_jobs(jobs: list[Job], methods: list[str] | None, kind: str = "table1") -> list[Job]:
    """The jobs named in ``methods`` (all when None), in the table's order; an unknown name is a one-line error.

    In Tables 1 and 2 a name that is not a row but has a model config (:func:`extra_row_configs`, e.g. the SSNet
    variant ``ssnet_paired_head``) is added as an extra row after the table's rows, in the order given.
    """
    if not methods:
        return jobs
    rows = [j.method for j in jobs]
    extra = [m for m in methods if m not in rows]
    variants = extra_row_configs(kind, rows) if extra else []
    unknown = [m for m in extra if m not in variants]
    if unknown:
        also = f"; extra rows (model configs): {', '.join(variants)}" if variants else ""
        raise SsnetError(f"--methods: unknown method(s) {', '.join(unknown)}; available: {', '.join(rows)}{also}")
    return [j for j in jobs if j.method in methods] + [EXTRA_ROW[kind](m) for m in extra]


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


@dataclass
class Planned:
    """One run of a table: its row, seed, overrides, deterministic name and folder (when reusable)."""

    job: Job
    seed: int
    overrides: list[str]
    name: str
    run_dir: Path | None = None
    why_retrain: str | None = None


def plan(jobs: list[Job], base: list[str], seeds: list[int], run_root: Path, check_code: bool = True,
         split: str | None = None) -> list[Planned]:
    """Every (row, seed) of a table with its run name and, when reusable, its finished folder (trained with the
    current code unless ``check_code`` is false, and on the split whose hash is ``split`` when given)."""
    from ssnet.engine.provenance import code_hash

    current = code_hash() if check_code else None
    out = []
    for job in jobs:
        for seed in seeds:
            overrides = base + job.overrides + [f"seed={seed}"]
            name = run_name(compose(overrides))
            run_dir, why = find_finished(run_root, name, current, split)
            out.append(Planned(job, seed, overrides, name, run_dir, why))
    return out


def estimate_seconds(p: Planned, run_root: Path) -> tuple[float | None, str]:
    """(seconds, source) for one run: its steps × the seconds per step of the newest finished run of the
    same method, profile and data size under ``run_root`` (run.json ``train_seconds_per_step``)."""
    cfg = compose(p.overrides)
    steps = int(cfg.train.max_steps)
    method = cfg.get("method") or cfg.model.key
    best: tuple[float, float] | None = None
    if run_root.is_dir():
        for rj in run_root.glob(f"{method}-{cfg.profile.name}-s*/run.json"):
            info = read_run(rj.parent)
            sps = info.get("train_seconds_per_step")
            if sps and (best is None or rj.stat().st_mtime > best[0]):
                best = (rj.stat().st_mtime, float(sps))
    if best is not None:
        return steps * best[1], f"{steps} steps × {best[1]:.2f} s/step measured"
    bench = benchmark_seconds_per_step(str(cfg.model.name), str(cfg.profile.name), int(cfg.train.batch_size),
                                       int(cfg.data.size), int(cfg.data.frames))
    if bench is None:
        return None, f"no estimate yet (no finished {method} run at this profile)"
    model = "" if cfg.model.name == method else f" ({cfg.model.name}'s step)"
    return steps * bench[0], f"{steps} steps × {bench[0]:.2f} s/step from {bench[1]}{model}"


# Committed step-time benchmarks (benchmarks/bench_train.py) that estimate a run before any run of its kind has
# finished on this machine: the quick profile on a 2-core CPU, the paper profile on one H200.
BENCHMARKS = {"cpu": CONFIG_DIR.parent / "results" / "cpu-2core" / "bench_train.csv",
              "cuda": CONFIG_DIR.parent / "results" / "h200" / "bench_train.csv"}


def benchmark_seconds_per_step(model: str, profile: str, batch_size: int, size: int, frames: int,
                               device: str | None = None) -> tuple[float, str] | None:
    """(seconds per step, source) of ``model`` in the committed benchmark of this device kind at the same profile,
    batch and size; another frame count is scaled linearly (said in the source). None when there is no row."""
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    path = BENCHMARKS.get(device)
    if path is None or not path.exists():
        return None
    df = pd.read_csv(path)
    rows = df[(df["method"] == model) & (df["profile"] == profile) & (df["batch_size"] == batch_size)
              & (df["size"] == size) & df["step_ms"].notna()]
    if rows.empty:
        return None
    row = rows.iloc[0]
    seconds, source = float(row["step_ms"]) / 1000, f"results/{path.parent.name}/{path.name}"
    if int(row["frames"]) != frames:
        seconds *= frames / int(row["frames"])
        source += f", scaled from T = {int(row['frames'])} to {frames}"
    return seconds, source


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def multi_process(cfg) -> bool:
    """Whether the run trains in several processes (``train.devices`` > 1, e.g. with ``train.strategy=ddp``)."""
    d = cfg.train.devices
    if isinstance(d, str):
        return d not in ("1", "auto")
    return (len(d) > 1) if not isinstance(d, int) else d != 1


def train_run(overrides: list[str]) -> Path:
    """Train one run; return its folder. A multi-process (DDP) run goes through ``ssnet train`` in a child
    process: Lightning starts its workers by re-running the current command, which must be that one run."""
    import subprocess

    from ssnet.engine.train import train

    cfg = compose(overrides)
    if not multi_process(cfg):
        return train(cfg, overrides)
    res = subprocess.run([sys.executable, "-m", "ssnet.cli", "train", *overrides], stdout=subprocess.PIPE, text=True)
    lines = res.stdout.strip().splitlines()
    if res.returncode != 0 or not lines:
        raise SsnetError(f"ssnet train {' '.join(overrides)}: failed with exit code {res.returncode} (its error is above)")
    return Path(lines[-1])


def run_job(job: Job, base: list[str], seed: int) -> Path:
    """Train (or reuse) one row at one seed; return the run folder."""
    planned = plan([job], base, [seed], Path(compose(base).run_root))[0]
    if planned.run_dir is not None:
        print(f"reusing {planned.run_dir}", file=sys.stderr)
        return planned.run_dir
    return train_run(planned.overrides)


def choose_profile(profile: str | None) -> tuple[str, str]:
    """``(profile, why)``: the requested one, else ``paper`` when CUDA is present, else ``quick``."""
    if profile:
        return profile, "--profile"
    import torch

    if torch.cuda.is_available():
        return "paper", f"CUDA device found ({torch.cuda.get_device_name(0)}); --profile quick for the CPU profile"
    return "quick", "no CUDA device; --profile paper for the paper's configuration (GPU)"


def ours_of(kind: str, jobs: list[Job]) -> str | None:
    """The row tested against every other: SSNet in Tables 1 and 2 when it is a row (Table 2: else its last row)."""
    if OURS in {j.method for j in jobs} and kind in ("table1", "table2"):
        return OURS
    return jobs[-1].method if kind == "table2" and jobs else None


def efficiency_columns(info: dict) -> dict[str, str]:
    """Table 1 efficiency cells from a run.json."""
    def num(key: str, fmt: str, scale: float = 1.0) -> str:
        v = info.get(key)
        return format(v / scale, fmt) if isinstance(v, (int, float)) else ""

    return {"params_m": num("params", ".2f", 1e6), "gflops": num("gflops_per_clip", ".1f"),
            "s_per_step": num("train_seconds_per_step", ".3f"), "peak_mem_mb": num("peak_memory_mb", ".0f"),
            "ms_per_clip": num("ms_per_clip", ".1f")}


def write_tables(kind: str, jobs: list[Job], runs: dict[tuple[str, int], Path], out_dir: Path, with_paper: bool) -> dict[str, Path]:
    """Per-case CSV, summary, rows, statistics and the table from finished run folders."""
    from ssnet.evaluation import tables
    from ssnet.evaluation.score import read_per_case

    frames, efficiency = [], {}
    for (method, _seed), run_dir in runs.items():
        frames.append(read_per_case(run_dir / "per_case.csv"))
        efficiency.setdefault(method, read_run(run_dir))
    per_case = pd.concat(frames, ignore_index=True)
    rows = []
    for job in jobs:
        cols = dict(job.columns)
        if kind == "table1":
            cols.update(efficiency_columns(efficiency.get(job.method, {})))
        rows.append(tables.TableRow(job.method, job.label, cols))
    return tables.write_bundle(kind, per_case, rows, ours_of(kind, jobs), out_dir, with_paper=with_paper)


class RunsPending(SsnetError):
    """Submitted jobs have not finished yet."""


def reproduce(kind: str, profile: str, seeds: list[int], data_dir: Path | None, out_dir: Path, with_paper: bool = True,
              extra: list[str] | None = None, launcher: str | None = None, launcher_opts: list[str] | None = None,
              wait: bool | None = None, methods: list[str] | None = None) -> dict[str, Path]:
    """Build one paper table end to end; return the written files.

    Without ``data_dir`` the profile's default phantom is used (generated once, then cached).
    ``methods`` restricts the rows (table order kept).
    ``launcher`` (``slurm``/``local``): submit the unfinished runs as jobs (:mod:`ssnet.engine.launch`);
    ``wait`` (default: true for ``local``) waits for them and writes the table, else returns ``{}``.
    """
    from ssnet.engine import launch

    jobs = select_jobs(JOBS[kind](), methods, kind)
    if data_dir is None:
        data_cfg = compose([f"profile={profile}", *(extra or [])]).data
        data_dir = Path(data_cfg.dir)
        ensure_phantom(data_dir, str(data_cfg.phantom_difficulty))
    elif not (data_dir / "manifest.csv").exists():
        raise SsnetError(f"{data_dir / 'manifest.csv'}: dataset not found")
    ensure_paper_split(data_dir)
    run_root = out_dir / "runs"
    base = [f"profile={profile}", f"data.dir={data_dir}", f"run_root={run_root}"] + list(extra or [])
    planned = plan(jobs, base, seeds, run_root.resolve(), split=split_hash(data_dir))
    todo = [p for p in planned if p.run_dir is None]
    jobs_file = out_dir / f"{kind}_jobs.json"
    submitted = launch.read_jobs(jobs_file)
    active = {e["run"] for e in submitted.get("jobs", []) if launch.job_active(submitted.get("launcher", ""), e)}
    waiting = [p for p in todo if p.name in active]
    if waiting and not launcher:
        n_done = len(planned) - len(todo)
        raise RunsPending(f"{n_done} of {len(planned)} runs finished; rerun when the jobs are done "
                          f"({len(waiting)} still queued or running, listed in {jobs_file})")
    for p in todo:
        if p.why_retrain:
            print(f"retraining {p.name}: {p.why_retrain}", file=sys.stderr)
    if launcher and todo:
        params = launch.launcher_config(launcher, launcher_opts)
        sub = [p for p in todo if p.name not in active]
        print(f"submitting {len(sub)} run(s) of {kind} to the {launcher} launcher "
              f"({len(planned) - len(todo)} of {len(planned)} finished, {len(todo) - len(sub)} already submitted)",
              file=sys.stderr)
        handles = launch.submit(launcher, params, [(p.name, p.overrides) for p in sub], out_dir, jobs_file) if sub else []
        for p, h in zip(sub, handles):
            print(f"  job {h.job_id}: {p.name}", file=sys.stderr)
        if not (launcher == "local" if wait is None else wait):
            print(f"{kind}: {len(planned) - len(todo)} of {len(planned)} runs finished; rerun "
                  f"`./reproduce.sh {kind}` with the same options when the jobs are done", file=sys.stderr)
            return {}
        for p, h in zip(sub, handles):
            try:
                h.result()
            except Exception as exc:
                raise SsnetError(f"job {h.job_id} ({p.name}) failed: {' '.join(str(exc).split())[-400:]}") from None
        planned = plan(jobs, base, seeds, run_root.resolve(), check_code=False)
        missing = [p.name for p in planned if p.run_dir is None]
        if missing:
            raise SsnetError(f"{len(planned) - len(missing)} of {len(planned)} runs finished; missing {missing[0]}")
        todo = []
    estimates = [estimate_seconds(p, run_root)[0] for p in todo]
    known = [e for e in estimates if e is not None]
    if known:
        n = f"all {len(todo)}" if len(known) == len(todo) else f"{len(known)} of {len(todo)}"
        print(f"{kind}: {len(todo)} of {len(planned)} runs to train; estimated ≈ {format_duration(sum(known))} of "
              f"training for {n} (validation and test prediction add to it)", file=sys.stderr)
    runs: dict[tuple[str, int], Path] = {}
    for i, p in enumerate(planned, 1):
        head = f"run {i}/{len(planned)}: {p.job.method} seed {p.seed}"
        if p.run_dir is not None:
            print(f"{head}: reusing {p.run_dir}", file=sys.stderr)
            runs[(p.job.method, p.seed)] = p.run_dir
            continue
        est, source = estimate_seconds(p, run_root)
        when = f"estimated {format_duration(est)} ({source})" if est is not None else source
        print(f"{head}: training -> {run_root / p.name} ({when})", file=sys.stderr)
        start = time.perf_counter()
        runs[(p.job.method, p.seed)] = train_run(p.overrides)
        print(f"{head}: done in {format_duration(time.perf_counter() - start)}", file=sys.stderr)
    jobs_file.unlink(missing_ok=True)
    previous = rerun.set_aside(out_dir, kind)
    written = write_tables(kind, jobs, runs, out_dir, with_paper)
    lines = rerun.compare_with_previous(written["per_case"], previous) if previous is not None else []
    if lines:
        print(f"{kind}: the new per-case values against the earlier ones, per run:", *lines, sep="\n", file=sys.stderr)
    return written


def main(argv: list[str]) -> int:
    if argv[:1] == ["sunnybrook"]:  # the real-data benchmark (ssnet/sunnybrook.py)
        from ssnet.sunnybrook import main as sunnybrook_main

        return sunnybrook_main(argv[1:])
    parser = argparse.ArgumentParser(prog="ssnet reproduce", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("table", choices=sorted(JOBS))
    parser.add_argument("--profile", default=None, choices=["smoke", "quick", "paper", "authors_code"],
                        help="default: paper when a CUDA device is present, else quick (the choice is printed)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default: 0 for quick/smoke, 0,1,2 for paper)")
    parser.add_argument("--data", type=Path, default=None, help="dataset folder (default: the profile's phantom, data/phantom-<difficulty>)")
    parser.add_argument("--out", type=Path, default=None, help="results folder (default: results/<profile>)")
    parser.add_argument("--no-paper", action="store_true", help="omit the paper's published numbers from the tables")
    parser.add_argument("--methods", default=None, help="comma-separated rows to run, e.g. unet,unetpp,ssnet (default: all)")
    parser.add_argument("--launcher", default=None, choices=["slurm", "local"],
                        help="submit the runs as jobs (configs/launcher/NAME.yaml, submitit); a later call collects them")
    parser.add_argument("--launcher-opt", action="append", default=[], metavar="KEY=VALUE",
                        help="override a launcher setting, e.g. --launcher-opt partition=gpu (repeatable)")
    parser.add_argument("--wait", action=argparse.BooleanOptionalAction, default=None,
                        help="wait for submitted jobs and write the table (default: only for --launcher local)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides applied to every run")
    args = parser.parse_intermixed_args(argv)  # overrides may follow options: table1 --profile paper train.max_steps=2
    profile, why = choose_profile(args.profile)
    print(f"profile {profile} ({why})", file=sys.stderr)
    seeds = [int(s) for s in (args.seeds or ("0,1,2" if profile == "paper" else "0")).split(",")]
    out = args.out or Path("results") / profile
    start = time.perf_counter()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    try:
        written = reproduce(args.table, profile, seeds, args.data, out, with_paper=not args.no_paper, extra=args.overrides,
                            launcher=args.launcher, launcher_opts=args.launcher_opt, wait=args.wait,
                            methods=methods)
    except RunsPending as exc:
        print(f"ssnet reproduce {args.table}: {exc}", file=sys.stderr)
        return 3
    if not written:
        return 0
    for key, path in written.items():
        print(f"{key}: {path}")
    md = written.get("md")
    if md and Path(md).exists():
        print(Path(md).read_text())
    print(f"{args.table} done in {time.perf_counter() - start:.0f} s")
    return 0
