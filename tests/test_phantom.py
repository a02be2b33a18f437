"""Tests of the motion-only MVO phantom (ssnet.data.phantom): tiny sizes, CPU, < 60 s."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from ssnet.data.contract import check_dataset, load_scan, read_manifest, scans
from ssnet.data.phantom import PhantomScan, contraction_phase, generate_phantom, main, plan_cohort, render_preview
from ssnet.errors import SsnetError
from ssnet.io import load_nifti

TINY = dict(subjects=4, size=64, frames=10, seed=3)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The same tiny cohort generated three times: workers=2, workers=1, and healthy lesion motion."""
    root = tmp_path_factory.mktemp("phantom")
    a = generate_phantom(root / "a", workers=2, **TINY)
    b = generate_phantom(root / "b", workers=1, **TINY)
    h = generate_phantom(root / "h", workers=2, healthy_lesion_motion=True, **TINY)
    return a, b, h


def _files(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _meta(d: Path) -> dict:
    return json.loads((d / "dataset.json").read_text())


# ----------------------------------------------------------------------------- cohort plan


def test_default_cohort_counts_without_rendering():
    plan = plan_cohort(125, 0, "paper")
    n = [len(p.slices) for p in plan]
    assert len(plan) == 125 and sum(n) == 621
    assert min(n) >= 3 and max(n) <= 7
    mvo_subjects = sum(p.has_mvo for p in plan)
    assert mvo_subjects == 63  # about half
    pos = sum(sl.has_mvo for p in plan for sl in p.slices)
    assert 0.18 <= pos / 621 <= 0.32
    for p in plan:
        assert any(sl.has_infarct for sl in p.slices)
        assert all(sl.has_infarct for sl in p.slices if sl.has_mvo)  # MVO only where the infarct is
        assert any(sl.has_mvo for sl in p.slices) == p.has_mvo
        mvo_idx = [sl.slice_index for sl in p.slices if sl.has_mvo]
        assert mvo_idx == list(range(mvo_idx[0], mvo_idx[0] + len(mvo_idx))) if mvo_idx else True  # contiguous core
    # the cohort structure does not depend on the difficulty, only the magnitudes do
    for diff in ("easy", "hard"):
        other = plan_cohort(125, 0, diff)
        assert [[s.has_mvo for s in p.slices] for p in other] == [[s.has_mvo for s in p.slices] for p in plan]
    assert plan_cohort(125, 1, "paper")[0] != plan[0]
    with pytest.raises(SsnetError):
        plan_cohort(3, 0, "impossible")


def test_cardiac_cycle_timing():
    for t_es in (0.35, 0.40):
        s = contraction_phase(np.arange(30) / 30, t_es)
        assert s[0] == 0.0 and s.max() <= 1.0 and s.min() >= 0.0
        assert 0.33 <= np.argmax(s) / 30 <= 0.42  # ES at 35-40 % of the cycle
        assert np.all(np.diff(s[: np.argmax(s) + 1]) > 0) and np.all(np.diff(s[np.argmax(s):]) <= 0)


def test_default_geometry_fits_the_96_pixel_centre_crop():
    plan = plan_cohort(125, 0, "paper")
    lo, hi = 224 // 2 - 48, 224 // 2 + 48
    for p in plan[::9]:
        for sl in (p.slices[0], p.slices[-1]):
            scan = PhantomScan(p, sl, size=224, frames=2)
            assert 1.4 <= scan.spacing <= 1.8
            # LV near the centre
            assert np.hypot(*scan.centre) / scan.spacing < 10
            lab = scan.label()
            rows, cols = np.nonzero(lab)
            assert rows.min() >= lo and rows.max() < hi and cols.min() >= lo and cols.max() < hi
            # whole heart: RV cavity + free wall, from the geometry (mm relative to the LV centre)
            ang = scan.rv_angle
            far = np.linalg.norm(scan.rv_centre) + scan.rv_axes[0] + scan.rv_wall
            tip = scan.centre + far * np.array([math.cos(ang), math.sin(ang)])
            assert np.all(np.abs(tip) / scan.spacing < 48)
            assert np.all(np.abs(scan.centre) + scan.epi0.max() < 48 * scan.spacing)
            ends = scan.centre + scan.rv_centre
            assert np.all(np.abs(ends) + scan.rv_axes[1] + scan.rv_wall < 48 * scan.spacing + 20)


# ----------------------------------------------------------------------------- contract, labels, determinism


def test_contract_valid_and_labels_nested(tiny):
    a, _, _ = tiny
    assert check_dataset(a) == []
    manifest = read_manifest(a)
    assert list(manifest.columns[:6]) == ["scan_id", "subject_id", "cine", "label", "spacing_row", "spacing_col"]
    assert not (a / "split.csv").exists()
    meta = _meta(a)
    assert meta["arguments"]["subjects"] == 4 and meta["arguments"]["difficulty"] == "paper"
    info = {s["scan_id"]: s for s in meta["scans"]}
    plan = {f"{p.subject_id}_sl{sl.slice_index:02d}": (p, sl) for p in plan_cohort(4, 3, "paper") for sl in p.slices}
    assert set(info) == set(manifest["scan_id"]) == set(plan)
    assert any(s["has_mvo"] for s in info.values()) and not all(s["has_mvo"] for s in info.values())
    for scan in scans(a):
        assert load_nifti(scan.cine)[0].dtype == np.uint8 and load_nifti(scan.label)[0].dtype == np.uint8
        cine, label = load_scan(scan)
        assert cine.shape == (10, 64, 64) and label.shape == (64, 64)
        assert set(np.unique(label)) <= {0, 1, 2, 3}
        assert scan.spacing == pytest.approx((360 / 64, 360 / 64), rel=1e-5)
        p, sl = plan[scan.scan_id]
        assert info[scan.scan_id]["has_mvo"] == bool((label == 3).any())
        if (label == 3).any():
            assert (label == 2).any() or sl.has_infarct
        # nesting: every lesion pixel lies in the myocardial wall, MVO within the infarct's depth
        model = PhantomScan(p, sl, size=64, frames=10)
        for cls, depth in ((2, model.infarct_depth), (3, model.mvo_depth)):
            rows, cols = np.nonzero(label >= cls)
            u, th = model.pixel_to_wall(rows, cols)
            assert np.all((u >= 0) & (u < 1))
            assert np.all(u < depth[model._lut(th)])
        assert np.all(model.mvo_depth <= model.infarct_depth)


def test_deterministic_across_runs_and_workers(tiny, tmp_path):
    a, b, _ = tiny
    fa, fb = _files(a), _files(b)
    assert fa.keys() == fb.keys() and len(fa) > 10
    assert all(fa[k] == fb[k] for k in fa)
    c = generate_phantom(tmp_path / "c", workers=2, **TINY)
    assert _files(c) == fa


def test_existing_folder_rules(tiny, tmp_path):
    a, _, _ = tiny
    before = {p: p.stat().st_mtime_ns for p in a.rglob("*") if p.is_file()}
    generate_phantom(a, workers=1, **TINY)  # identical arguments: a no-op
    assert {p: p.stat().st_mtime_ns for p in a.rglob("*") if p.is_file()} == before
    with pytest.raises(SsnetError, match=str(a)):
        main(["--out", str(a), "--subjects", "2", "--size", "64", "--frames", "10", "--seed", "3"])
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(SsnetError, match="refusing"):
        generate_phantom(foreign, subjects=1, size=48, frames=4)
    out = generate_phantom(foreign, subjects=1, size=48, frames=4, force=True)
    assert check_dataset(out) == [] and (foreign / "notes.txt").read_text() == "mine"
    # forced regeneration with fewer scans removes the stale files of the old dataset
    c = tmp_path / "c"
    generate_phantom(c, subjects=2, size=48, frames=4, workers=1)
    generate_phantom(c, subjects=1, size=48, frames=4, workers=1, force=True)
    assert check_dataset(c) == []
    assert len(list((c / "cines").iterdir())) == len(read_manifest(c))
    for bad in (["--out", str(tmp_path / "x"), "--size", "8"], ["--out", str(tmp_path / "x"), "--frames", "1"],
                ["--out", str(tmp_path / "x"), "--contrast", "2"], ["--out", str(tmp_path / "x"), "--subjects", "0"], []):
        with pytest.raises(SsnetError):
            main(bad)


# ----------------------------------------------------------------------------- the premise: lesion only in motion


def test_lesion_lives_only_in_motion(tiny):
    a, _, h = tiny
    meta = _meta(a)
    mvo_ids = [s["scan_id"] for s in meta["scans"] if s["has_mvo"]]
    healthy_ids = [s["scan_id"] for s in meta["scans"] if not s["has_infarct"]]
    assert mvo_ids
    by_id_a, by_id_h = {s.scan_id: s for s in scans(a)}, {s.scan_id: s for s in scans(h)}
    for sid in mvo_ids:
        cine_a, lab_a = load_scan(by_id_a[sid])
        cine_h, lab_h = load_scan(by_id_h[sid])
        assert np.array_equal(lab_a, lab_h)
        assert np.array_equal(cine_a[0], cine_h[0])  # frame 0 bit-identical
        es = next(s["es_frame"] for s in meta["scans"] if s["scan_id"] == sid)
        assert not np.array_equal(cine_a[es], cine_h[es])  # the lesion shows in later frames
        assert sum(not np.array_equal(cine_a[t], cine_h[t]) for t in range(1, 10)) >= 6
    for sid in healthy_ids:  # scans without lesion are unaffected
        assert np.array_equal(load_scan(by_id_a[sid])[0], load_scan(by_id_h[sid])[0])


def _mvo_scans(difficulty: str, n: int, subjects: int = 8, seed: int = 0, **kw):
    out = []
    for p in plan_cohort(subjects, seed, difficulty):
        for sl in p.slices:
            if sl.has_mvo and len(out) < n:
                out.append(PhantomScan(p, sl, seed=seed, **kw))
    assert out
    return out


@pytest.mark.parametrize("difficulty", ["easy", "paper"])
def test_mvo_sector_does_not_thicken(difficulty):
    change = np.zeros(2)
    for scan in _mvo_scans(difficulty, 4, size=224, frames=30):
        thick = scan.thickening()  # from the generator's geometry, per angle
        i_mvo = scan._lut(np.array(scan.mvo_centre))
        healthy = np.abs(((scan.angles - scan.infarct_centre + np.pi) % (2 * np.pi)) - np.pi) > math.radians(90)
        if difficulty == "paper":  # akinetic core: no thickening
            assert abs(thick[i_mvo]) < 0.10, thick[i_mvo]
        else:  # dyskinetic core: slight systolic thinning
            assert -0.15 < thick[i_mvo] < 0.0, thick[i_mvo]
        assert thick[healthy].min() >= 0.30
        assert thick[i_mvo] < np.median(thick[healthy]) * 0.5
        # the rendered frames agree: at the endocardial border of the MVO sector, the ED->ES change is far
        # below that of the same sector given healthy motion (the control; same drift and twist)
        control = PhantomScan(scan.subject, scan.slice, size=224, frames=30, healthy_lesion_motion=True)
        es = int(np.argmax(scan.s))
        x, y = scan.pixel_mm()
        r, th = np.hypot(x, y), np.arctan2(y, x)
        i = scan._lut(th)
        near_mvo = np.abs(((th - scan.mvo_centre + np.pi) % (2 * np.pi)) - np.pi) < math.radians(3)
        sector = (r > scan.endo0[i] - 8) & (r < scan.endo0[i] + 1) & near_mvo
        change += [np.abs(c[es] - c[0])[sector].mean() for c in (scan.render_clean(), control.render_clean())]
    assert change[0] < 0.5 * change[1], change


def _patch_values(scan: PhantomScan) -> tuple[np.ndarray, np.ndarray]:
    """Frame-0 values of the MVO patch and of the same patch rotated (in wall coordinates) into healthy myocardium."""
    cine = scan.render()[..., 0].astype(np.float64)
    label = scan.label()
    rows, cols = np.nonzero(label == 3)
    u, th = scan.pixel_to_wall(rows, cols)
    src, dst = [], []
    for alpha in (math.pi / 2, -math.pi / 2, math.pi):
        r2, c2 = scan.wall_to_pixel(u, th + alpha)
        r2, c2 = np.rint(r2).astype(int), np.rint(c2).astype(int)
        ok = label[r2, c2] == 1
        src.append(cine[rows[ok], cols[ok]])
        dst.append(cine[r2[ok], c2[ok]])
    return np.concatenate(src), np.concatenate(dst)


def test_mvo_intensity_matches_healthy_myocardium_without_contrast():
    from scipy.stats import mannwhitneyu, ttest_ind

    def pooled(contrast):
        pairs = [_patch_values(s) for s in _mvo_scans("easy", 6, size=224, frames=2, contrast=contrast)]
        return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])

    mvo, healthy = pooled(0.0)
    assert len(mvo) > 200
    assert mannwhitneyu(mvo, healthy).pvalue > 0.01
    assert ttest_ind(mvo, healthy, equal_var=False).pvalue > 0.01
    assert abs(mvo.mean() - healthy.mean()) < 0.1 * healthy.std()
    mvo_c, healthy_c = pooled(0.3)
    assert mannwhitneyu(mvo_c, healthy_c).pvalue < 1e-6
    assert mvo_c.mean() < 0.85 * healthy_c.mean()  # MVO darker by ~contrast (diluted by partial volume)


# ----------------------------------------------------------------------------- preview


def test_preview_png(tiny, tmp_path):
    a, _, _ = tiny
    png = render_preview(tmp_path / "from_files.png", a)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["--preview", str(tmp_path / "mem.png"), "--size", "64", "--frames", "6", "--difficulty", "easy"]) == 0
    assert (tmp_path / "mem.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SsnetError):
        main(["--preview", str(tmp_path / "x.jpg")])
    # --out of an existing dataset without generator flags: preview from the files, nothing regenerated
    before = _files(a)
    assert main(["--out", str(a), "--preview", str(tmp_path / "cli.png")]) == 0
    assert (tmp_path / "cli.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and _files(a) == before
