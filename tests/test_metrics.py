"""Golden values of the metric reference (both protocols), empty cases, policy, MONAI cross-checks."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import ndimage as ndi

from ssnet.evaluation.metrics import (
    apply_strict_policy,
    class_metrics,
    directed_distances,
    edge,
    evaluate_scan,
    image_diagonal,
    paper_aggregate,
    strict_aggregate,
    strict_policy_value,
)

RTOL = 1e-4


def fixture(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(P, G) 32×32 boolean fixtures of the reference §4."""
    g = np.zeros((32, 32), bool)
    p = np.zeros((32, 32), bool)
    if name.startswith("shift2"):
        g[10:18, 10:18] = True
        p[12:20, 10:18] = True
        if name == "shift2_fp_dot":
            p[28:30, 28:30] = True
    elif name == "rect_vs_square":
        g[8:24, 8:24] = True
        p[8:24, 10:22] = True
    elif name == "inner":
        g[8:24, 8:24] = True
        p[14:18, 14:18] = True
    else:
        raise KeyError(name)
    return p, g


# fixture, spacing, DSC, HD, HD95, MedPy hd95, NSD, ASSD, MASD
GOLDEN = [
    ("shift2", (1, 1), 0.75, 2.0, 2.0, 2.0, 0.5714, 1.0, 1.0),
    ("shift2", (2, 1), 0.75, 4.0, 4.0, 4.0, 0.5, 1.7143, 1.7143),
    ("shift2_fp_dot", (1, 1), 0.7273, 16.9706, 16.2788, 15.5925, 0.5333, 2.0181, 1.9544),
    ("shift2_fp_dot", (2, 1), 0.7273, 26.8328, 25.6633, 24.6199, 0.4667, 3.3148, 3.2148),
    ("rect_vs_square", (1, 1), 0.8571, 2.0, 2.0, 2.0, 0.5, 1.0714, 1.0667),
    ("rect_vs_square", (2, 1), 0.8571, 2.0, 2.0, 2.0, 0.4643, 1.1071, 1.1051),
    ("inner", (1, 1), 0.1176, 8.4853, 8.4853, 8.1140, 0.0, 6.5977, 6.3586),
]


def close(a: float, b: float) -> bool:
    # rel 1e-4 on the 4-decimal reference values (abs 1e-4 covers rounding of values like 0.5714 and 0.0)
    return math.isclose(a, b, rel_tol=RTOL, abs_tol=1e-4)


def medpy_pooled_hd95(p: np.ndarray, g: np.ndarray, spacing: tuple[float, float]) -> float:
    """MedPy-style hd95: both directed distance sets pooled before one percentile."""
    ep, eg = edge(p), edge(g)
    pooled = np.concatenate([directed_distances(ep, eg, spacing), directed_distances(eg, ep, spacing)])
    return float(np.percentile(pooled, 95))


@pytest.mark.parametrize("name,spacing,dsc,hd,hd95,medpy,nsd,assd,masd", GOLDEN)
def test_strict_golden(name, spacing, dsc, hd, hd95, medpy, nsd, assd, masd):
    p, g = fixture(name)
    r = class_metrics(p, g, spacing=spacing, tau=1.0)
    s = r["strict"]
    assert r["empty_status"] == "both"
    for key, want in (("dsc", dsc), ("hd", hd), ("hd95", hd95), ("nsd", nsd), ("assd", assd), ("masd", masd)):
        assert close(s[key], want), (name, spacing, key, s[key], want)
    # the MedPy pooled percentile is the reference's "must differ" column: reproduce it, then compare
    assert close(medpy_pooled_hd95(p, g, spacing), medpy)
    if not close(medpy, hd95):
        assert not close(s["hd95"], medpy)


def test_hd95_is_not_medpy_pooled_on_shift2_fp_dot():
    p, g = fixture("shift2_fp_dot")
    ours = class_metrics(p, g, spacing=(1, 1))["strict"]["hd95"]
    pooled = medpy_pooled_hd95(p, g, (1, 1))
    assert close(ours, 16.2788) and close(pooled, 15.5925)
    assert abs(ours - pooled) > 0.5


@pytest.mark.parametrize("name,hsd", [("shift2", 2.0), ("shift2_fp_dot", 16.9706), ("rect_vs_square", 2.0), ("inner", 6.0)])
def test_paper_hsd_golden(name, hsd):
    p, g = fixture(name)
    for spacing in (None, (1, 1), (2, 1)):  # paper HSD is in pixels whatever the spacing
        assert close(class_metrics(p, g, spacing=spacing)["paper"]["hsd"], hsd)


def test_paper_hsd_is_directed():
    p, g = fixture("shift2_fp_dot")
    reverse = class_metrics(g, p)["paper"]["hsd"]
    assert close(reverse, 2.0)
    p, g = fixture("inner")
    r = class_metrics(p, g)
    assert close(r["paper"]["hsd"], 6.0) and close(r["strict"]["hd"], 8.4853)


def test_paper_inner_overlap():
    p, g = fixture("inner")
    r = class_metrics(p, g)["paper"]
    assert close(r["jaccard"], 0.0625) and r["precision"] == 1.0 and close(r["recall"], 0.0625)
    assert close(r["dice"], 0.1176)


@pytest.mark.parametrize(
    "case,status,dice,jac,prec,rec",
    [("both_empty", "empty", 1, 1, 1, 1), ("miss", "miss", 0, 0, 1, 0), ("fp", "fp", 0, 0, 0, 1)],
)
def test_paper_empty_cases(case, status, dice, jac, prec, rec):
    z = np.zeros((32, 32), bool)
    sq = z.copy()
    sq[4:10, 4:10] = True
    p, g = {"both_empty": (z, z), "miss": (z, sq), "fp": (sq, z)}[case]
    r = class_metrics(p, g, spacing=(1, 1))
    assert r["empty_status"] == status
    assert (r["paper"]["dice"], r["paper"]["jaccard"], r["paper"]["precision"], r["paper"]["recall"]) == (dice, jac, prec, rec)
    assert math.isnan(r["paper"]["hsd"])  # excluded
    # strict: distances undefined (raw NaN) → policy
    for m in ("hd", "hd95", "nsd", "assd", "masd"):
        assert math.isnan(r["strict"][m])
    diag = image_diagonal((32, 32), (1, 1))
    for m in ("dsc", "iou", "precision", "recall", "nsd", "hd", "hd95", "assd", "masd"):
        v = strict_policy_value(m, r["strict"][m], status, diag)
        dist = m in ("hd", "hd95", "assd", "masd")
        want = (0.0 if dist else 1.0) if status == "empty" else (diag if dist else 0.0)
        assert v == want, (m, status, v)


def test_strict_raw_values_nan_where_undefined():
    z = np.zeros((16, 16), bool)
    sq = z.copy()
    sq[2:6, 2:6] = True
    miss = class_metrics(z, sq)["strict"]
    assert miss["dsc"] == 0.0 and miss["recall"] == 0.0 and math.isnan(miss["precision"])
    fp = class_metrics(sq, z)["strict"]
    assert fp["dsc"] == 0.0 and fp["precision"] == 0.0 and math.isnan(fp["recall"])
    empty = class_metrics(z, z)["strict"]
    assert all(math.isnan(v) for v in empty.values())


def test_defined_zero_stays_zero():
    g = np.zeros((32, 32), bool)
    p = g.copy()
    g[2:6, 2:6] = True
    p[20:24, 20:24] = True
    r = class_metrics(p, g)
    assert r["empty_status"] == "both" and r["strict"]["dsc"] == 0.0
    assert apply_strict_policy(["dsc"], [0.0], ["both"], 45.0)[0] == 0.0


@pytest.mark.parametrize(
    "shape,spacing,diag", [((64, 64), (1, 1), 90.50966799), ((32, 32), (2, 1), 71.55417528), ((224, 224), (1, 1), 316.78383797)]
)
def test_diagonals(shape, spacing, diag):
    assert math.isclose(image_diagonal(shape, spacing), diag, rel_tol=1e-9)
    assert math.isclose(image_diagonal((224, 224)), 316.78383797, rel_tol=1e-9)


def _strict_rows(cases: list[tuple[np.ndarray, np.ndarray]], metric: str) -> tuple[np.ndarray, np.ndarray]:
    raws, stats = [], []
    for p, g in cases:
        r = class_metrics(p, g, spacing=(1, 1))
        raws.append(r["strict"][metric])
        stats.append(r["empty_status"])
    vals = apply_strict_policy([metric] * len(raws), raws, stats, image_diagonal((32, 32)))
    return vals, np.asarray(stats)


def test_regression_trap_fp_lowers_mean_dsc():
    z = np.zeros((32, 32), bool)
    sq = z.copy()
    sq[4:10, 4:10] = True
    shift = fixture("shift2")
    vals, st = _strict_rows([shift, (sq, z), (z, sq)], "dsc")  # {0.75, fp, miss}
    assert list(st) == ["both", "fp", "miss"]
    assert math.isclose(strict_aggregate(vals, st)["mean"], 0.25)
    # MONAI's ignore_empty default would drop the fp case and give 0.375
    assert not math.isclose(float(np.mean([0.75, 0.0])), 0.25)


def test_regression_trap_miss_raises_mean_hd95():
    z = np.zeros((32, 32), bool)
    sq = z.copy()
    sq[4:10, 4:10] = True
    shift = fixture("shift2")
    vals1, st1 = _strict_rows([shift], "hd95")
    vals2, st2 = _strict_rows([shift, (z, sq)], "hd95")
    m1, m2 = strict_aggregate(vals1, st1)["mean"], strict_aggregate(vals2, st2)["mean"]
    assert math.isclose(m1, 2.0) and m2 > m1
    assert math.isclose(m2, (2.0 + image_diagonal((32, 32))) / 2)


def test_strict_aggregate_counts_and_detection():
    vals = np.array([0.8, 0.0, 0.0, 1.0, 1.0])
    st = ["both", "miss", "fp", "empty", "empty"]
    agg = strict_aggregate(vals, st)
    assert (agg["n_both"], agg["n_miss"], agg["n_fp"], agg["n_empty"]) == (1, 1, 1, 2)
    assert agg["det_sensitivity"] == 0.5 and math.isclose(agg["det_specificity"], 2 / 3)
    assert math.isclose(agg["mean_pos"], 0.4) and math.isclose(agg["mean"], 0.56)
    assert agg["median"] == 0.8 and agg["q25"] == 0.0 and agg["q75"] == 1.0


def test_paper_aggregate():
    assert paper_aggregate([np.nan, np.nan], "hsd") == (1.0, 0)
    assert paper_aggregate([2.0, np.nan, 4.0], "hsd") == (3.0, 2)
    assert paper_aggregate([1.0, 0.0, 0.5], "dice") == (0.5, 3)
    with pytest.raises(ValueError):
        paper_aggregate([np.nan], "dice")


def test_never_predicting_mvo_scores_negative_share():
    z = np.zeros((16, 16), np.int64)
    pos = z.copy()
    pos[4:8, 4:8] = 3
    gts = [pos, z, z, pos, z]  # 3 of 5 negative
    rows = [r for g in gts for r in evaluate_scan(z, g, classes=(3,), protocols=("paper",))]
    by = {m: [r["value"] for r in rows if r["metric"] == m] for m in ("dice", "jaccard", "recall", "precision", "hsd")}
    for m in ("dice", "jaccard", "recall"):
        assert math.isclose(paper_aggregate(by[m], m)[0], 0.6)
    assert paper_aggregate(by["precision"], "precision")[0] == 1.0
    assert paper_aggregate(by["hsd"], "hsd") == (1.0, 0)


def test_edges_border_counts_as_background():
    m = np.ones((5, 5), bool)
    e = edge(m)
    assert e.sum() == 16 and not e[1:4, 1:4].any()


def test_bbox_crop_matches_full_image_computation():
    """Distances on the cropped box equal a naive full-image computation (masks at borders too)."""
    rng = np.random.default_rng(1)
    for i in range(20):
        p = ndi.gaussian_filter(rng.random((40, 40)), 2) > 0.55
        g = ndi.gaussian_filter(rng.random((40, 40)), 2) > 0.55
        if not (p.any() and g.any()):
            continue
        sp = (1.0, 1.0) if i % 2 else (1.3, 0.6)
        ep, eg = edge(p), edge(g)
        dpg = ndi.distance_transform_edt(~eg, sampling=sp)[ep]
        dgp = ndi.distance_transform_edt(~ep, sampling=sp)[eg]
        r = class_metrics(p, g, spacing=sp)
        assert math.isclose(r["strict"]["hd"], max(dpg.max(), dgp.max()), rel_tol=1e-12)
        assert math.isclose(r["strict"]["assd"], (dpg.sum() + dgp.sum()) / (dpg.size + dgp.size), rel_tol=1e-12)
        assert math.isclose(r["paper"]["hsd"], ndi.distance_transform_edt(~eg)[ep].max(), rel_tol=1e-12)


def test_evaluate_scan_rows():
    g = np.zeros((32, 32), np.int64)
    g[8:24, 8:24] = 1
    g[10:18, 10:18] = 3
    p = np.zeros_like(g)
    p[8:24, 8:24] = 1
    p[12:20, 10:18] = 3
    rows = evaluate_scan(p, g, classes=(1, 2, 3), spacing=(1, 1))
    assert len(rows) == 3 * (5 + 9)
    mvo = {(r["protocol"], r["metric"]): r for r in rows if r["class_id"] == 3}
    assert mvo[("paper", "dice")]["value"] == 0.75 and mvo[("strict", "hd95")]["value"] == 2.0
    inf = {(r["protocol"], r["metric"]): r for r in rows if r["class_id"] == 2}
    assert inf[("strict", "hd")]["empty_status"] == "empty" and inf[("strict", "hd")]["value"] == 0.0
    assert math.isnan(inf[("strict", "hd")]["raw_value"])


# --------------------------------------------------------------------------- MONAI oracle


def _random_pairs(n: int, size: int = 40, seed: int = 0):
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        p = ndi.gaussian_filter(rng.random((size, size)), 2.5) > 0.52
        g = ndi.gaussian_filter(rng.random((size, size)), 2.5) > 0.52
        if p.any() and g.any():
            out.append((p, g))
    return out


def test_cross_check_monai_hd95_hd_dice():
    torch = pytest.importorskip("torch")
    monai_metrics = pytest.importorskip("monai.metrics")

    def onehot(m: np.ndarray):
        return torch.from_numpy(np.stack([~m, m])[None].astype(np.float32))

    for i, (p, g) in enumerate(_random_pairs(10)):
        sp = (1.0, 1.0) if i % 2 else (1.5, 0.7)
        r = class_metrics(p, g, spacing=sp)["strict"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hd95 = monai_metrics.HausdorffDistanceMetric(percentile=95)(onehot(p), onehot(g), spacing=list(sp)).item()
            hd = monai_metrics.HausdorffDistanceMetric()(onehot(p), onehot(g), spacing=list(sp)).item()
            dice = monai_metrics.DiceMetric(include_background=False)(onehot(p), onehot(g)).item()
        assert math.isclose(r["hd95"], hd95, rel_tol=1e-5), (i, r["hd95"], hd95)
        assert math.isclose(r["hd"], hd, rel_tol=1e-5)
        assert math.isclose(r["dsc"], dice, rel_tol=1e-6)
