"""Infrastructure: DDP sharding, provenance and reuse, profile choice, submitit jobs, committed tables, figures."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ssnet import experiments
from ssnet.data.sampling import StepBatchSampler
from ssnet.engine import provenance
from ssnet.engine.launch import launcher_config
from ssnet.errors import SsnetError

REPO = Path(__file__).resolve().parents[1]
SMOKE = ["data.size=32", "data.frames=3", "train.batch_size=4"]


def _only(monkeypatch, *methods: str) -> None:
    """Restrict Table 1 to ``methods`` (keeps these tests small whatever baselines are registered)."""
    full = experiments.table1_jobs
    monkeypatch.setitem(experiments.JOBS, "table1", lambda: [j for j in full() if j.method in methods])


def test_sampler_shards_by_rank_and_keeps_the_global_batch() -> None:
    single = StepBatchSampler(13, 4, seed=5, total_steps=9)
    ranks = [StepBatchSampler(13, 4, seed=5, total_steps=9, rank=r, world_size=2) for r in range(2)]
    for step in range(9):
        shares = [s.batch(step) for s in ranks]
        assert all(len(b) == 2 for b in shares)
        assert sorted(shares[0] + shares[1]) == sorted(single.batch(step))
    resumed = StepBatchSampler(13, 4, seed=5, total_steps=9, start_step=6, rank=1, world_size=2)
    assert list(resumed) == list(ranks[1])[6:]
    with pytest.raises(ValueError, match="smaller than"):
        StepBatchSampler(13, 1, seed=0, total_steps=1, rank=0, world_size=2)


def test_provenance_and_stale_reason(monkeypatch, tmp_path) -> None:
    info = provenance.provenance()
    assert len(info["code_hash"]) == 12 and info["git_dirty"] in (True, False, None)
    assert provenance.stale_reason({"code_hash": info["code_hash"]}) is None
    assert "no code hash" in provenance.stale_reason({})
    why = provenance.stale_reason({"code_hash": "000000000000", "git_commit": info["git_commit"]}, info["code_hash"])
    assert why.startswith("the training code changed")
    # not a git checkout: git fields are null, the code hash still works
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "a.yaml").write_text("x: 1\n")
    monkeypatch.setattr(provenance, "REPO_ROOT", tmp_path)
    provenance.process_snapshot.cache_clear()
    try:
        other = provenance.provenance()
        assert other["git_commit"] is None and other["git_dirty"] is None and other["code_hash"] != info["code_hash"]
        assert "code_changed_in_process" not in other
        # the training code changes on disk after the process started: the run's code is unknown, never reused
        (tmp_path / "configs" / "a.yaml").write_text("x: 2\n")
        changed = provenance.provenance()
        assert changed["code_hash"] is None and changed["code_changed_in_process"] is True
        assert "while the process that trained it was running" in provenance.stale_reason(changed, other["code_hash"])
        assert provenance.process_snapshot()["code_hash"] == other["code_hash"]  # the snapshot is the start's
    finally:
        provenance.process_snapshot.cache_clear()


def test_profile_follows_the_device(monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert experiments.choose_profile(None)[0] == "quick"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Fake GPU")
    profile, why = experiments.choose_profile(None)
    assert profile == "paper" and "Fake GPU" in why
    assert experiments.choose_profile("smoke") == ("smoke", "--profile")


def test_launcher_configs_follow_the_plugin_schema() -> None:
    slurm = launcher_config("slurm", ["partition=gpu", "timeout_min=30"])
    assert slurm["partition"] == "gpu" and slurm["timeout_min"] == 30 and "_target_" not in slurm
    assert "gpus_per_node" in launcher_config("local")
    with pytest.raises(SsnetError, match="bad launcher option"):
        launcher_config("slurm", ["no_such_key=1"])


def test_ddp_two_processes_on_cpu(tiny_split_dataset: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "ssnet.cli", "train", "model=unet", "profile=smoke", *SMOKE, f"data.dir={tiny_split_dataset}",
           f"run_root={runs}", "train.accelerator=cpu", "train.devices=2", "train.strategy=ddp"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    folders = [p for p in runs.iterdir() if p.is_dir()]
    assert len(folders) == 1  # the worker used rank 0's folder
    run = folders[0]
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "done" and info["world_size"] == 2 and info["steps"] == 2
    assert info["train_seconds_per_step"] > 0 and info["peak_memory_mb"] > 0 and "git_commit" in info
    assert 0 < info["val_seconds"] < info["train_seconds"] and info["val_share"] == pytest.approx(
        info["val_seconds"] / info["train_seconds"], abs=0.01)  # the smoke profile validates every 2 steps
    assert sorted(p.name for p in (run / "predictions").iterdir()) == ["P05_sl0.nii.gz", "P05_sl1.nii.gz"]
    assert len(list(run.rglob("per_case.csv"))) == 1


def test_submitit_local_sweep_is_collected(tiny_split_dataset: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    _only(monkeypatch, "unet")
    out = Path("results")
    written = experiments.reproduce("table1", "smoke", [0, 1], tiny_split_dataset, out, extra=SMOKE, launcher="local")
    err = capsys.readouterr().err
    assert "submitting 2 run(s)" in err and err.count("  job ") == 2
    per_case = pd.read_csv(written["per_case"])
    assert sorted(per_case["seed"].unique()) == [0, 1] and set(per_case["method"]) == {"unet"}
    assert "±" in Path(written["md"]).read_text() and not (out / "table1_jobs.json").exists()
    # a later plain call collects the same finished runs
    again = experiments.reproduce("table1", "smoke", [0, 1], tiny_split_dataset, out, extra=SMOKE)
    assert capsys.readouterr().err.count("reusing") == 2
    assert Path(again["csv"]).read_bytes() == Path(written["csv"]).read_bytes()
    # jobs still queued/running: report and train nothing
    planned = experiments.plan(experiments.JOBS["table1"](), [f"profile=smoke", f"data.dir={tiny_split_dataset}",
                                                              f"run_root={out / 'runs'}", *SMOKE], [7], (out / "runs").resolve())
    (out / "table1_jobs.json").write_text(json.dumps({"launcher": "local", "jobs": [
        {"run": planned[0].name, "job_id": str(os.getpid()), "folder": "x"}]}))
    with pytest.raises(experiments.RunsPending, match="0 of 1 runs finished; rerun when the jobs are done"):
        experiments.reproduce("table1", "smoke", [7], tiny_split_dataset, out, extra=SMOKE)


def test_changed_code_retrains_with_a_reason(tiny_split_dataset: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    _only(monkeypatch, "unet")
    out = tmp_path / "results"
    experiments.reproduce("table1", "smoke", [0], tiny_split_dataset, out, extra=SMOKE)
    monkeypatch.setattr(provenance, "code_hash", lambda root=None: "ffffffffffff")
    capsys.readouterr()
    experiments.reproduce("table1", "smoke", [0], tiny_split_dataset, out, extra=SMOKE)
    err = capsys.readouterr().err
    assert "retraining unet-smoke-s0-" in err and "the training code changed" in err
    assert "run 1/1: unet seed 0: training" in err and "s/step measured" in err  # estimate from the first run
    assert len(list((out / "runs").glob("unet-smoke-s0-*"))) == 2


def test_a_fresh_machine_estimates_runs_from_the_committed_benchmark(tmp_path: Path, monkeypatch) -> None:
    bench = tmp_path / "cpu-2core" / "bench_train.csv"
    bench.parent.mkdir()
    bench.write_text("method,profile,device,batch_size,frames,size,step_ms\n"
                     "ssnet,quick,cpu-2core,4,10,64,1500\nunet,quick,cpu-2core,4,10,64,\n")
    monkeypatch.setattr(experiments, "BENCHMARKS", {"cpu": bench})
    assert experiments.benchmark_seconds_per_step("ssnet", "quick", 4, 64, 10, "cpu") == (1.5, "results/cpu-2core/bench_train.csv")
    seconds, source = experiments.benchmark_seconds_per_step("ssnet", "quick", 4, 64, 30, "cpu")
    assert seconds == pytest.approx(4.5) and "scaled from T = 10 to 30" in source
    assert experiments.benchmark_seconds_per_step("unet", "quick", 4, 64, 10, "cpu") is None  # no step time (failed row)
    assert experiments.benchmark_seconds_per_step("ssnet", "quick", 8, 64, 10, "cpu") is None  # another batch
    assert experiments.benchmark_seconds_per_step("ssnet", "quick", 4, 64, 10, "cuda") is None  # no GPU benchmark here
    # no finished run under the run root: the table's announcement uses the benchmark (table 2 rows: SSNet's model)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    (planned,) = experiments.plan([experiments.Job("ssnet_static_only", "static only", ["model=ssnet_static_only"])], ["profile=quick"],
                                  [0], tmp_path / "runs", check_code=False)
    seconds, source = experiments.estimate_seconds(planned, tmp_path / "runs")
    assert seconds == pytest.approx(300 * 1.5) and source == "300 steps × 1.50 s/step from results/cpu-2core/bench_train.csv (ssnet's step)"


def test_paper_profile_smoke_on_cpu_and_figures(tiny_split_dataset: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    """``--profile paper`` with a step override runs on CPU; its runs feed the Fig. 3 panel and the box plot."""
    from ssnet.evaluation.figures import make_figures

    monkeypatch.chdir(tmp_path)
    _only(monkeypatch, "unet", "ssnet")
    out = Path("results") / "paper"
    extra = ["train.max_steps=1", "train.val_every=1", "train.progress_bar=false", *SMOKE]
    assert experiments.main(["table1", "--profile", "paper", "--seeds", "0", "--data", str(tiny_split_dataset),
                            "--out", str(out), *extra]) == 0
    err = capsys.readouterr().err
    assert "profile paper (--profile)" in err and "run 1/2: unet seed 0" in err and "run 2/2: ssnet seed 0" in err
    info = json.loads(next((out / "runs").glob("ssnet-paper-s0-*/run.json")).read_text())
    assert info["profile"] == "paper" and info["steps"] == 1
    rows = pd.read_csv(out / "table1_rows.csv", dtype=str, keep_default_na=False)
    assert list(rows["method"]) == ["unet", "ssnet"] and (rows["s_per_step"] != "").all()
    assert "s/step" in (out / "table1.md").read_text() and "Dice infarct" in (out / "table1.md").read_text()
    written, missing = make_figures(out, "paper")
    assert sorted(p.name for p in written) == ["fig3_panel.png", "mvo_dice_boxplot.png"]
    assert any("run `./reproduce.sh table2 --profile paper` first" in m for m in missing)
    assert all(p.stat().st_size > 5000 for p in written)


def test_figures_from_synthetic_per_case(tmp_path: Path) -> None:
    from test_tables import make_per_case

    from ssnet.evaluation.figures import make_figures

    res = tmp_path / "quick"
    res.mkdir()
    pd.concat([make_per_case(m, q, 2) for m, q in (("ssnet_static_only", 0), ("ssnet_late_fusion", 1), ("ssnet", 3))]
              ).to_csv(res / "table2_per_case.csv", index=False)
    pd.concat([make_per_case(f"ssnet_T{t}", q, 1) for t, q in ((5, 0), (10, 3), (15, 2), (30, 1))]
              ).to_csv(res / "table3_per_case.csv", index=False)
    t1 = pd.concat([make_per_case(m, q, 1) for m, q in (("unet", 0), ("vivim", 1), ("ssnet", 3))])
    t1.to_csv(res / "table1_per_case.csv", index=False)
    from ssnet.evaluation.stats import paired_stats

    paired_stats(t1, "ssnet", protocol="paper").to_csv(res / "table1_stats.csv", index=False)
    written, missing = make_figures(res)
    assert sorted(p.name for p in written) == ["ablation_bars.png", "frames_sweep.png", "mvo_dice_boxplot.png"]
    assert len(missing) == 1 and missing[0].startswith("fig3_panel.png")  # no run folders here
    assert all((res / "figures" / p.name).stat().st_size > 5000 for p in written)


COMMITTED = sorted(p for p in (REPO / "results").glob("*/table[123].csv"))


@pytest.mark.parametrize("table", COMMITTED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_tables_regenerate_byte_for_byte(table: Path, tmp_path: Path) -> None:
    """Every committed table parses and equals what the documented command makes from its per-case CSV:
    ``ssnet tables --kind K --per-case results/P/K_per_case.csv.gz --rows results/P/K_rows.csv --with-paper --out DIR``."""
    from ssnet.cli import main as cli

    kind, folder = table.stem, table.parent
    df = pd.read_csv(table, dtype=str, keep_default_na=False)
    assert {"Protocol", "Method"} <= set(df.columns) and "no-MVO" in set(df["Method"])
    rows = folder / f"{kind}_rows.csv"
    assert rows.is_file(), f"{rows} missing: regeneration needs the rows' labels and extra columns"
    assert cli(["tables", "--kind", kind, "--per-case", str(folder / f"{kind}_per_case.csv.gz"), "--rows", str(rows),
                "--with-paper", "--out", str(tmp_path)]) == 0
    for suffix in ("", "_strict"):
        for fmt in ("csv", "md", "tex"):
            name = f"{kind}{suffix}.{fmt}"
            assert (tmp_path / name).read_bytes() == (folder / name).read_bytes(), f"{folder / name} is not reproduced"


def test_gzipped_csv_is_reproducible_and_round_trips(tmp_path: Path) -> None:
    from ssnet.io import atomic_write_csv

    df = pd.DataFrame({"scan_id": ["a", "b"], "value": [0.5, 1.0]})
    atomic_write_csv(df, tmp_path / "x.csv.gz")
    first = (tmp_path / "x.csv.gz").read_bytes()
    atomic_write_csv(df, tmp_path / "x.csv.gz")
    assert (tmp_path / "x.csv.gz").read_bytes() == first and first[:2] == b"\x1f\x8b"
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "x.csv.gz"), df)


def test_provenance_records_what_cpu_results_depend_on() -> None:
    import torch

    from ssnet.engine import provenance

    info = provenance.provenance()
    assert info["torch_version"] == torch.__version__
    assert info["torch_threads"] == torch.get_num_threads() >= 1
    assert info["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert info["cpu_model"] is None or (isinstance(info["cpu_model"], str) and info["cpu_model"])


def _two_seed_files(tmp_path: Path) -> tuple[Path, Path, pd.DataFrame]:
    """Seed 0 and seed 1 of two methods written to separate per-case CSVs, as two reproduce calls would."""
    from test_tables import make_per_case

    both = pd.concat([make_per_case(m, q, 2) for m, q in (("unet", 0), ("ssnet", 3))], ignore_index=True)
    first, second = tmp_path / "seed0.csv", tmp_path / "seed1.csv"
    both[both["seed"] == 0].to_csv(first, index=False)
    both[both["seed"] == 1].to_csv(second, index=False)
    return first, second, both


def test_tables_bundle_pools_seeds_from_separate_files(tmp_path: Path) -> None:
    """``ssnet tables --bundle`` on two reproduce calls' per-case files equals the bundle of one pooled call."""
    from ssnet.cli import main as cli
    from ssnet.evaluation.tables import INPUT_COL, TableRow, _registry_info, write_bundle

    first, second, both = _two_seed_files(tmp_path)
    assert cli(["tables", "--kind", "table1", "--per-case", str(first), str(second), "--bundle",
                "--out", str(tmp_path / "cli")]) == 0
    rows = [TableRow(m, _registry_info(m)[0], {INPUT_COL: _registry_info(m)[1]}) for m in ("unet", "ssnet")]
    write_bundle("table1", both, rows, "ssnet", tmp_path / "direct")
    names = {p.name for p in (tmp_path / "cli").iterdir()}
    assert {"table1_per_case.csv.gz", "table1_summary.csv", "table1_rows.csv", "table1_stats.csv", "table1.csv"} <= names
    pooled = pd.read_csv(tmp_path / "cli" / "table1_per_case.csv.gz")
    assert sorted(pooled["seed"].unique()) == [0, 1] and len(pooled) == len(both)
    summary = pd.read_csv(tmp_path / "cli" / "table1_summary.csv")
    assert set(summary["n_seeds"]) == {2}
    for name in ("table1.csv", "table1_stats.csv", "table1_summary.csv"):
        assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "direct" / name).read_bytes(), name


def test_tables_merges_rows_files_of_separate_calls(tmp_path: Path) -> None:
    """An extra row run by a separate reproduce call joins the table through a second ``--rows`` file; a method
    listed in both keeps the first file's row."""
    from ssnet.cli import main as cli

    first, second, _ = _two_seed_files(tmp_path)
    extra = pd.read_csv(second).query("method == 'ssnet'").assign(method="ssnet_paired_head")
    extra.to_csv(tmp_path / "extra.csv", index=False)
    pd.DataFrame({"method": ["unet", "ssnet"], "label": ["UNet", "SSNet"], "input": ["Image", "Video"]}).to_csv(
        tmp_path / "rows.csv", index=False)
    pd.DataFrame({"method": ["ssnet_paired_head", "unet"], "label": ["SSNet (code head)", "UNet again"],
                  "input": ["Video", "Image"]}).to_csv(tmp_path / "rows_extra.csv", index=False)
    assert cli(["tables", "--kind", "table1", "--per-case", str(first), str(tmp_path / "extra.csv"), "--rows",
                str(tmp_path / "rows.csv"), str(tmp_path / "rows_extra.csv"), "--bundle", "--out", str(tmp_path / "o")]) == 0
    rows = pd.read_csv(tmp_path / "o" / "table1_rows.csv")
    assert rows["method"].tolist() == ["unet", "ssnet", "ssnet_paired_head"] and rows["label"][0] == "UNet"
    table = pd.read_csv(tmp_path / "o" / "table1.csv")
    assert {"UNet", "SSNet", "SSNet (code head)"} <= set(table["Method"])


def test_tables_refuses_a_seed_given_twice(tmp_path: Path, capsys) -> None:
    from ssnet.cli import main as cli

    first, _, _ = _two_seed_files(tmp_path)
    assert cli(["tables", "--kind", "table1", "--per-case", str(first), str(first), "--bundle",
                "--out", str(tmp_path / "o")]) != 0
    assert "method 'unet' seed 0 appears twice" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_tables_methods_takes_each_row_from_the_first_file_that_has_it(tmp_path: Path, capsys) -> None:
    """``--methods`` pools overlapping files (Table 2's rows from one, an extra SSNet variant from another): each
    method comes from the first file that has it, the rest is dropped, and Table 2's flags come from the configs."""
    from ssnet.cli import main as cli
    from test_tables import make_per_case

    ablations = pd.concat([make_per_case(m, q, 1) for m, q in (("ssnet_static_only", 0), ("ssnet", 3))], ignore_index=True)
    other = pd.concat([make_per_case(m, q, 1) for m, q in (("ssnet", 1), ("ssnet_paired_head", 2), ("unet", 0))],
                      ignore_index=True)
    a, b = tmp_path / "table2.csv", tmp_path / "table1.csv"
    ablations.to_csv(a, index=False)
    other.to_csv(b, index=False)
    args = ["tables", "--kind", "table2", "--per-case", str(a), str(b), "--bundle", "--out", str(tmp_path / "o")]
    assert cli(args) != 0 and "method 'ssnet' seed 0 appears twice" in capsys.readouterr().err
    assert cli(args + ["--methods", "ssnet_static_only,ssnet,ssnet_paired_head"]) == 0
    assert "ssnet: from " + str(a) in capsys.readouterr().err
    pooled = pd.read_csv(tmp_path / "o" / "table2_per_case.csv.gz")
    assert set(pooled["method"]) == {"ssnet_static_only", "ssnet", "ssnet_paired_head"}
    kept = pooled[pooled["method"] == "ssnet"]["value"].to_numpy()
    assert np.array_equal(kept, ablations[ablations["method"] == "ssnet"]["value"].to_numpy(), equal_nan=True)
    assert not np.array_equal(kept, other[other["method"] == "ssnet"]["value"].to_numpy(), equal_nan=True)
    rows = pd.read_csv(tmp_path / "o" / "table2_rows.csv")
    assert rows["method"].tolist() == ["ssnet_static_only", "ssnet", "ssnet_paired_head"]
    assert rows["label"].tolist() == ["SSNet (static only)", "SSNet", "SSNet (code head)"]
    assert rows["motion_encoder"].tolist() == ["✗", "✓", "✓"]
    assert cli(args + ["--methods", "ssnet,nope"]) != 0
    assert "--methods: nope in none of the per-case files" in capsys.readouterr().err


def test_find_finished_takes_the_newest_run_of_this_split_and_code(tmp_path: Path) -> None:
    from ssnet.engine.runs import find_finished

    def run(name: str, split: str, code: str, status: str = "done") -> None:
        (tmp_path / name).mkdir()
        (tmp_path / name / "run.json").write_text(json.dumps({"status": status, "split_hash": split, "code_hash": code}))
        (tmp_path / name / "per_case.csv").write_text("x\n")

    assert find_finished(tmp_path, "r") == (None, None)
    run("r", "s1", "c1")
    run("r-2", "s2", "c1")
    run("r-3", "s1", "c1", status="running")
    assert find_finished(tmp_path, "r", "c1", "s1")[0] == tmp_path / "r"
    assert find_finished(tmp_path, "r", "c1", "s2")[0] == tmp_path / "r-2"
    assert find_finished(tmp_path, "r", None, None)[0] == tmp_path / "r-2"  # no checks: the newest finished run
    none, why = find_finished(tmp_path, "r", "c1", "s3")
    assert none is None and why.startswith("r-2: it was trained on another split (split hash s2")
    none, why = find_finished(tmp_path, "r", "c2", "s2")
    assert none is None and "training code changed" in why
