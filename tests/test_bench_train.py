"""benchmarks/bench_train.py in CI: the smoke mode runs and writes the expected CSV (no timing assertions)."""
from __future__ import annotations

import csv
from pathlib import Path

from conftest import load_benchmark  # tests/ is on sys.path (pytest rootdir import)



def _bench():
    return load_benchmark("bench_train")


def test_smoke_writes_csv_with_expected_columns(tmp_path: Path, capsys) -> None:
    bench = _bench()
    out = tmp_path / "cpu" / "bench_train.csv"
    assert bench.main(["--smoke", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == bench.COLUMNS and len(rows) == 1
    row = rows[0]
    assert row["method"] == "unet" and row["error"] == "" and row["device"].startswith("cpu-")
    assert float(row["step_ms"]) > 0 and float(row["gflop_per_step"]) > 0 and 0 <= float(row["data_wait_share"]) < 1
    assert float(row["wall_ms"]) > 0 and 0 <= float(row["data_wait_share_overlapped"]) < 1
    assert row["peak_tflops"] == "" and row["peak_share"] == ""  # no peak on CPU
    table = bench.markdown(out)
    assert table.count("\n") == 2 and "| unet | cpu-" in table


def test_unknown_method_is_a_row_with_its_error(tmp_path: Path) -> None:
    bench = _bench()
    row = bench.measure("no_such_model", "smoke", steps=1, warmup=0)
    assert row["method"] == "no_such_model" and "bad config override" in row["error"]


def test_channels_last_gives_the_same_output() -> None:
    import torch
    from omegaconf import OmegaConf

    from ssnet import registry
    from ssnet.engine.train import prepare_model

    torch.manual_seed(0)
    model = registry.build("unet", frames=3, img_size=32, backbone="resnet18").eval()
    x = torch.randn(2, 3, 1, 32, 32)
    with torch.no_grad():
        ref = model(x)
        out = prepare_model(model, OmegaConf.create({"train": {"channels_last": True, "compile": False}}))(x)
    assert any(p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
               for p in model.parameters())
    assert torch.allclose(torch.as_tensor(ref), torch.as_tensor(out), atol=1e-4)


def test_sdpa_report_names_every_attention_stage_on_cpu() -> None:
    """The GPU report's machinery, run on the CPU at smoke size (CPU has flash and math kernels)."""
    import torch

    bench = _bench()
    rows = bench.sdpa_report("ssnet", "smoke", bench.SMOKE, device=torch.device("cpu"))
    assert [r["stage"] for r in rows] == [f"attention.{i}" for i in range(len(rows))] and rows
    assert all(r["math"] == "ok" and r["picked"] in ("flash", "efficient", "cudnn", "math") for r in rows)


def test_profile_step_smoke_tables(tmp_path: Path, capsys) -> None:
    """benchmarks/profile_step.py: per-module forward times (containers expanded) and operator tables, step and data path."""
    prof = load_benchmark("profile_step")
    out = tmp_path / "ssnet"
    assert prof.main(["--method", "ssnet", "--profile", "smoke", "--steps", "1", "--warmup", "0", "--top", "5", "--out", str(out)]) == 0
    mods = list(csv.DictReader(Path(f"{out}_modules.csv").open()))
    names = [r["module"] for r in mods]
    assert names[0] == "(whole forward)" and float(mods[0]["share_of_forward"]) == 1.0
    assert "static_encoder" in names and "attention.0" in names  # the ModuleList's items, which are called
    assert all(float(r["forward_ms_per_step"]) <= float(mods[0]["forward_ms_per_step"]) for r in mods)
    ops = list(csv.DictReader(Path(f"{out}_ops.csv").open()))
    assert len(ops) == 5 and float(ops[0]["ms_per_step"]) > 0
    assert prof.main(["--method", "unet", "--profile", "smoke", "--data", "--steps", "2", "--warmup", "0", "--top", "40"]) == 0
    text = capsys.readouterr().out
    assert "data path:" in text and "BatchAugment.params" in text and "BatchAugment.apply" in text
