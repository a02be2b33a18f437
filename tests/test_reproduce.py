"""``reproduce.sh table1`` path end to end at the smoke profile on a tiny dataset."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ssnet import registry
import pytest

from ssnet.errors import SsnetError
from ssnet.experiments import model_config, ours_of, reproduce, select_jobs, table1_jobs, table2_jobs, table3_jobs


def test_table_job_lists() -> None:
    t1 = [j.method for j in table1_jobs()]
    assert t1[0] == "unet" and t1[-1] == "ssnet" and set(t1) <= set(registry.names())
    t2 = table2_jobs()
    assert [j.columns["static_encoder"] for j in t2] == ["✓", "✓", "✗", "✓", "✓"]
    assert [j.columns["uncertainty_refinement"] for j in t2] == ["✗", "✗", "✗", "✗", "✓"]
    assert [j.columns["frames"] for j in table3_jobs()] == ["5", "10", "15", "30"]
    assert model_config("ssnet_static_only")["name"] == "ssnet"


def test_table1_takes_a_model_config_variant_as_an_extra_row() -> None:
    """``--methods unet,ssnet_paired_head`` in Table 1: the registered row in table order, then the variant config
    (built from ``configs/model/ssnet_paired_head.yaml``, labelled by its display name, input kind of SSNet)."""
    jobs = select_jobs(table1_jobs(), ["ssnet_paired_head", "unet"], "table1")
    assert [j.method for j in jobs] == ["unet", "ssnet_paired_head"]
    variant = jobs[1]
    assert variant.overrides == ["model=ssnet_paired_head"] and variant.columns == {"input": "Video"}
    assert variant.label == "SSNet (code head)" and model_config("ssnet_paired_head")["options"]["refine_head"] == "paired"
    with pytest.raises(SsnetError, match="unknown method.*nope"):
        select_jobs(table1_jobs(), ["nope"], "table1")
    with pytest.raises(SsnetError, match="unknown method.*unet.*extra rows.*ssnet_paired_head"):  # Table 2: SSNet configs only
        select_jobs(table2_jobs(), ["unet"], "table2")


def test_table2_takes_an_ssnet_variant_as_an_extra_row_and_keeps_ssnet_as_ours() -> None:
    """``./reproduce.sh table2 --methods ssnet_no_refinement,ssnet,ssnet_paired_head``: the ablation rows in table
    order, then the variant with the ablation flags of its config; SSNet stays the row tested against the others."""
    jobs = select_jobs(table2_jobs(), ["ssnet_paired_head", "ssnet", "ssnet_no_refinement"], "table2")
    assert [j.method for j in jobs] == ["ssnet_no_refinement", "ssnet", "ssnet_paired_head"]
    assert jobs[2].label == "SSNet (code head)" and jobs[2].overrides == ["model=ssnet_paired_head"]
    assert set(jobs[2].columns.values()) == {"✓"} and jobs[0].columns["uncertainty_refinement"] == "✗"
    assert ours_of("table2", jobs) == "ssnet"
    assert ours_of("table2", jobs[:1]) == "ssnet_no_refinement"


def test_reproduce_table1_smoke_and_reuse(tiny_split_dataset: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = Path("results")  # relative, as reproduce.sh uses it
    extra = ["data.size=32", "data.frames=3", "train.batch_size=4"]
    # one image method, one video baseline and SSNet (every registered model trains end to end in test_no_leak.py)
    methods = ["unet", "pns_plus", "ssnet"]
    written = reproduce("table1", "smoke", [0], tiny_split_dataset, out, with_paper=True, extra=extra, methods=methods)
    per_case = pd.read_csv(written["per_case"])
    assert set(per_case["method"]) == set(methods)
    assert per_case["split_hash"].nunique() == 1
    md = Path(written["md"]).read_text()
    assert "| UNet |" in md and "| PNS+ |" in md and "| SSNet |" in md and "no-MVO" in md and "(paper†)" in md
    assert "\\begin{table}" in Path(written["tex"]).read_text()
    stats = pd.read_csv(written["stats"])
    assert set(stats["protocol"]) == {"paper", "strict"} and (stats["method_a"] == "ssnet").all()
    capsys.readouterr()
    first_csv = Path(written["csv"]).read_bytes()
    (out / "table1_claims.csv").write_text("made by hand\n")  # a file of the table that reproduce does not write
    # a second call reuses every finished run, sets the earlier files aside and writes identical tables
    again = reproduce("table1", "smoke", [0], tiny_split_dataset, out, with_paper=True, extra=extra, methods=methods)
    err = capsys.readouterr().err
    assert "reusing" in err and "not overwritten" in err
    assert Path(again["csv"]).read_bytes() == first_csv
    (previous,) = (out / "previous").iterdir()
    assert (previous / "table1.csv").read_bytes() == first_csv and (previous / "table1_claims.csv").exists()
    assert not (out / "table1_claims.csv").exists()  # claims of the earlier table do not sit beside the new one
    for method in methods:
        assert f"  {method} seed 0: identical (" in err
