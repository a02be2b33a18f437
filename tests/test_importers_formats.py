"""Importers for the authors' layout, ACDC and cine DICOM of any vendor; labels optional in the contract.

Every source folder is built by the test itself, in the exact layout, in a few milliseconds.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from ssnet.cli import main as cli_main
from ssnet.data.contract import check_dataset, has_labels, load_scan, read_manifest, read_split, scans

# ----------------------------------------------------------------------------------------------- helpers


def run(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = cli_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(capsys, argv: list, *needles: str) -> str:
    rc, out, err = run(capsys, "import", *argv)
    assert rc == 1, (rc, out, err)
    assert "Traceback" not in err + out
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("ssnet import: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def write_png(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def toy(size=(24, 20), frames=7, seed=0, mvo=True):
    rng = np.random.default_rng(seed)
    cine = rng.integers(0, 255, size=(frames, *size), dtype=np.uint8)
    label = np.zeros(size, np.uint8)
    label[5:15, 4:12] = 1
    if mvo:
        label[7:10, 5:8] = 2
        label[8, 6] = 3
    return cine, label


# --------------------------------------------------------------------------------------- authors' layout
AUTHORS = {  # part -> [(patient, slice, has_mvo, short mask name)]
    "train_val": [(f"P{p:03d}", s, p % 2 == 0, s == 2) for p in range(1, 9) for s in (1, 2)],
    "test": [("P101", 1, True, False), ("P102", 4, False, True)],
}


def make_authors(root: Path, frames: int = 7) -> Path:
    import tifffile

    for part, items in AUTHORS.items():
        for k, (pat, sl, mvo, short) in enumerate(items):
            cine, label = toy(frames=frames, seed=k + (100 if part == "test" else 0), mvo=mvo)
            (root / part / "Cine").mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(root / part / "Cine" / f"{pat}_{sl}_0000.nii.tiff", cine)
            write_png(root / part / "masks" / (f"{pat}_{sl}.nii.png" if short else f"{pat}_{sl}_0000.nii.png"), label)
        (root / part / "LGE").mkdir()
        (root / part / "LGE" / "x_0000.nii.tiff").write_bytes(b"not read")
    return root


def test_authors_import(tmp_path, capsys):
    src = make_authors(tmp_path / "src")
    rc, out, err = run(capsys, "import", "authors", src, "--out", tmp_path / "ds")
    assert rc == 0, err
    assert "18 scans of 10 subjects" in out
    ds = tmp_path / "ds"
    assert check_dataset(ds) == [] and has_labels(ds)
    m = read_manifest(ds).set_index("scan_id")
    assert len(m) == 18 and m.loc["P003_2", "subject_id"] == "P003" and m.loc["P102_4", "subject_id"] == "P102"
    assert m["spacing_row"].isna().all()
    sc = {s.scan_id: s for s in scans(ds)}
    cine, label = load_scan(sc["P101_1"])
    ref_cine, ref_label = toy(seed=100, mvo=True)
    np.testing.assert_array_equal(cine, ref_cine)  # 7 frames as given: nothing assumes 30
    np.testing.assert_array_equal(label, ref_label)
    split = read_split(ds).set_index("scan_id")["split"]
    assert set(split[split == "test"].index) == {"P101_1", "P102_4"}
    tv = split.drop(["P101_1", "P102_4"])
    by_patient = tv.groupby(tv.index.str.split("_").str[0]).agg(set)
    assert all(len(v) == 1 for v in by_patient)  # patient-wise
    assert (tv == "train").sum() == 14 and (tv == "val").sum() == 2  # 7:1 by patients
    info = json.loads((ds / "dataset.json").read_text())
    assert "LGE" in out and "train_val/LGE" in info["ignored"] and info["split"]["scans"] == {"train": 14, "val": 2, "test": 2}


def test_authors_bad_inputs(tmp_path, capsys):
    src = make_authors(tmp_path / "src")
    out = ["--out", tmp_path / "ds"]
    cine = src / "train_val" / "Cine" / "P002_1_0000.nii.tiff"
    good = cine.read_bytes()
    cine.write_bytes(good[: len(good) // 2])
    one_line_error(capsys, ["authors", src, *out], "P002_1_0000.nii.tiff", "truncated TIFF")
    cine.write_bytes(good)
    mask = src / "train_val" / "masks" / "P002_1_0000.nii.png"
    bad = toy()[1]
    bad[2, 2] = 7
    write_png(mask, bad)
    one_line_error(capsys, ["authors", src, *out], "P002_1_0000.nii.png", "found 7")
    write_png(mask, np.zeros((20, 24), np.uint8))
    one_line_error(capsys, ["authors", src, *out], "P002_1_0000.nii.png", "does not match", "P002_1_0000.nii.tiff")
    write_png(src / "train_val" / "masks" / "P002_1.nii.png", toy()[1])  # both mask names for one cine
    one_line_error(capsys, ["authors", src, *out], "P002_1", "keep one")
    mask.unlink()
    (src / "train_val" / "masks" / "P002_1.nii.png").unlink()
    one_line_error(capsys, ["authors", src, *out], "P002_1_0000.nii.tiff", "without a mask")
    write_png(mask, toy()[1])
    (src / "test" / "Cine" / "P001_9_0000.nii.tiff").write_bytes(good)  # patient in both folders
    write_png(src / "test" / "masks" / "P001_9_0000.nii.png", toy()[1])
    one_line_error(capsys, ["authors", src, *out], "P001", "both")
    assert not (tmp_path / "ds").exists()


# ---------------------------------------------------------------------------------------------- ACDC
def make_acdc(root: Path, patients=(("patient001", "MINF", 3), ("patient002", "DCM", 1)), frames: int = 9,
              slices: int = 3, size=(20, 16), spacing=(1.5, 1.25, 10.0, 1.0)) -> Path:
    """ACDC layout: 4-D cine whose frame t holds the value 10*t everywhere + the slice index, gt at ED and ES."""
    import nibabel as nib

    for k, (pid, group, ed) in enumerate(patients):
        d = root / pid
        d.mkdir(parents=True)
        t = np.arange(frames, dtype=np.int16)
        cine = np.broadcast_to(10 * t[None, None, None, :] + np.arange(slices, dtype=np.int16)[None, None, :, None],
                               (*size, slices, frames)).copy()
        cine[0, 0, :, :] += 1000 * (k + 1)
        img = nib.Nifti1Image(cine, np.diag([*spacing[:3], 1.0]))
        img.header.set_zooms(spacing)
        nib.save(img, d / f"{pid}_4d.nii.gz")
        gt = np.zeros((*size, slices), np.uint8)
        gt[4:16, 3:13, :-1] = 2    # myocardium on all but the last slice (beyond the apex)
        gt[7:13, 6:10, :-1] = 3    # LV cavity
        gt[4:16, 0:3, :] = 1       # RV
        es = (ed + 3 - 1) % frames + 1
        for f, lab in ((ed, gt), (es, np.where(gt == 3, 2, gt))):
            nib.save(nib.Nifti1Image(lab, np.diag([*spacing[:3], 1.0])), d / f"{pid}_frame{f:02d}_gt.nii.gz")
        (d / "Info.cfg").write_text(f"ED: {ed}\nES: {es}\nGroup: {group}\nHeight: 180.0\nNbFrame: {frames}\n"
                                    "Weight: 80.0\n")
    return root


def test_acdc_import(tmp_path, capsys):
    src = make_acdc(tmp_path / "src")
    rc, out, err = run(capsys, "import", "acdc", src, "--out", tmp_path / "ds")
    assert rc == 0, err
    assert "4 scans of 2 subjects" in out and "2 not imported: no myocardium" in out
    ds = tmp_path / "ds"
    assert check_dataset(ds) == []
    m = read_manifest(ds).set_index("scan_id")
    assert list(m.index) == ["patient001_sl01", "patient001_sl02", "patient002_sl01", "patient002_sl02"]
    assert list(m["group"]) == ["MINF", "MINF", "DCM", "DCM"]  # pathology group kept as an extra column
    assert (m.spacing_row == 1.5).all() and (m.spacing_col == 1.25).all()
    sc = {s.scan_id: s for s in scans(ds)}
    cine, label = load_scan(sc["patient001_sl02"])
    assert cine.shape == (9, 20, 16)
    assert cine[0, 5, 5] == 10 * 2 + 1  # ED (frame 3, 1-based) rolled to frame 0; slice index 1
    assert [int(v) for v in cine[:, 5, 5]] == [10 * ((2 + i) % 9) + 1 for i in range(9)]
    expected = np.zeros((20, 16), np.int64)
    expected[4:16, 3:13] = 1
    expected[7:13, 6:10] = 0
    np.testing.assert_array_equal(label, expected)  # ACDC 2 -> 1; RV (1) and LV cavity (3) -> 0
    assert load_scan(sc["patient002_sl01"])[0][0, 5, 5] == 0  # ED = frame 1: no roll
    info = json.loads((ds / "dataset.json").read_text())
    assert info["subjects"]["patient001"]["group"] == "MINF" and "3" in info["labels_absent"]
    assert info["scans"]["patient001_sl02"]["es_frame"] == 3
    assert not (ds / "split.csv").exists()  # flat layout: no split
    assert run(capsys, "import", "acdc", src, "--out", tmp_path / "ds2", "--keep-empty")[0] == 0
    assert len(read_manifest(tmp_path / "ds2")) == 6


def test_acdc_training_testing_split(tmp_path, capsys):
    make_acdc(tmp_path / "src" / "training", patients=[(f"patient{i:03d}", "NOR", 1) for i in range(1, 9)], slices=2)
    make_acdc(tmp_path / "src" / "testing", patients=[("patient101", "HCM", 2)], slices=2)
    assert run(capsys, "import", "acdc", tmp_path / "src", "--out", tmp_path / "ds")[0] == 0
    split = read_split(tmp_path / "ds").set_index("scan_id")["split"]
    assert split["patient101_sl01"] == "test" and set(split) == {"train", "val", "test"}


def test_acdc_bad_inputs(tmp_path, capsys):
    import nibabel as nib

    src = make_acdc(tmp_path / "src")
    out = ["--out", tmp_path / "ds"]
    cfg = src / "patient002" / "Info.cfg"
    cfg.write_text("ES: 4\nGroup: DCM\n")
    one_line_error(capsys, ["acdc", src, *out], "patient002/Info.cfg", "ED")
    cfg.write_text("ED: 12\nGroup: DCM\n")
    one_line_error(capsys, ["acdc", src, *out], "Info.cfg", "ED: 12 is outside")
    cfg.write_text("ED: 1\nGroup: DCM\nNbFrame: 30\n")
    one_line_error(capsys, ["acdc", src, *out], "Info.cfg", "NbFrame: 30", "9 frames")
    cfg.write_text("ED: 1\nGroup: DCM\n")
    gt = src / "patient002" / "patient002_frame01_gt.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((20, 16, 2), np.uint8), np.eye(4)), gt)
    one_line_error(capsys, ["acdc", src, *out], "patient002_frame01_gt.nii.gz", "does not match")
    lab = np.zeros((20, 16, 3), np.uint8)
    lab[3, 3, 0] = 7
    nib.save(nib.Nifti1Image(lab, np.diag([1.5, 1.25, 10, 1])), gt)
    one_line_error(capsys, ["acdc", src, *out], "patient002_frame01_gt.nii.gz", "found 7")
    gt.unlink()
    one_line_error(capsys, ["acdc", src, *out], "patient002_frame01_gt.nii.gz", "not found")
    cine = src / "patient001" / "patient001_4d.nii.gz"
    cine.write_bytes(cine.read_bytes()[:200])
    one_line_error(capsys, ["acdc", src, *out], "patient001_4d.nii.gz")
    assert not (tmp_path / "ds").exists()


# --------------------------------------------------------------------------------------------- DICOM
SERIES = "1.2.826.0.1.3680043.8.498.1"


def dcm(pixels, *, series=SERIES, loc=None, ipp=None, trigger=None, instance=None, patient="PAT 01",
        spacing=(1.4, 1.3)) -> bytes:
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.SeriesInstanceUID, ds.SeriesDescription = "MR", patient, series, "cine SA"
    if loc is not None:
        ds.SliceLocation = f"{loc:.3f}"
    if ipp is not None:
        ds.ImagePositionPatient = [f"{v:.3f}" for v in ipp]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    if trigger is not None:
        ds.TriggerTime = f"{trigger:.2f}"
    if instance is not None:
        ds.InstanceNumber = instance
    if spacing is not None:
        ds.PixelSpacing = [str(spacing[0]), str(spacing[1])]
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = pixels.astype("<u2").tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def frame_image(slice_k: int, t: int, size=24) -> np.ndarray:
    img = np.full((size, size), 100 * slice_k + t, np.uint16)
    img[0, :] = np.arange(size)  # orientation marker
    return img


def make_dicom(root: Path, slices=2, frames=6, trigger=True, use_ipp=False, shuffle=True, size=24) -> Path:
    """2 slices x 6 frames x 24²; files named in scrambled order so that only the headers can order them."""
    rng = np.random.default_rng(0)
    names = rng.permutation(slices * frames)
    for k in range(slices):
        for t in range(frames):
            n = k * frames + t
            pos = dict(ipp=(-10.0, -20.0, 5.0 * k)) if use_ipp else dict(loc=5.0 * k)
            data = dcm(frame_image(k, t, size), trigger=30.0 * t + 7 if trigger else None, instance=n + 1, **pos)
            sub = root / "PAT01" / "study"
            sub.mkdir(parents=True, exist_ok=True)
            (sub / (f"IM{names[n] if shuffle else n:04d}")).write_bytes(data)  # extension-less, as many vendors
    return root


def test_dicom_import_without_labels_then_check(tmp_path, capsys):
    src = make_dicom(tmp_path / "src")
    # a single-frame localizer series beside the cine: reported, not imported
    (src / "PAT01" / "loc.dcm").write_bytes(dcm(np.zeros((24, 24)), series="1.2.3.9", loc=0.0, trigger=0.0, instance=1))
    rc, out, err = run(capsys, "import", "dicom", src, "--out", tmp_path / "ds")
    assert rc == 0, err
    assert "2 scans of 1 subjects (2 without a label" in out and "1 not imported: one frame per slice" in out
    ds = tmp_path / "ds"
    m = read_manifest(ds)
    assert list(m.scan_id) == [f"{SERIES}_1", f"{SERIES}_2"] and set(m.subject_id) == {"PAT_01"}
    assert (m.label == "").all() and (m.spacing_row == 1.4).all() and (m.spacing_col == 1.3).all()
    assert not has_labels(ds)
    for k, scan in enumerate(scans(ds)):
        assert scan.label is None
        cine, label = load_scan(scan)
        assert label is None and cine.shape == (6, 24, 24)
        np.testing.assert_array_equal(cine, np.stack([frame_image(k, t) for t in range(6)]))  # TriggerTime order
    rc, out, err = run(capsys, "check", ds)
    assert rc == 0, out + err
    assert "2 of 2 scans have no label: they can be predicted, not scored" in out
    info = json.loads((ds / "dataset.json").read_text())
    assert info["scans"][f"{SERIES}_2"]["slice_location_mm"] == 5.0 and info["skipped"][0]["series"] == "1.2.3.9"
    # the split treats unlabeled scans as MVO-negative instead of failing
    assert run(capsys, "split", ds, "--ratios", "1,0,0")[0] == 0


def test_dicom_masks_ipp_and_instance_fallback(tmp_path, capsys):
    from ssnet.io import save_nifti

    src = make_dicom(tmp_path / "src", trigger=False, use_ipp=True)  # no SliceLocation, no TriggerTime
    _, label = toy(size=(24, 24))
    write_png(src / "masks" / f"{SERIES}_1.png", label)
    save_nifti(src / "masks" / f"{SERIES}_2.nii.gz", (label > 0).astype(np.uint8))
    rc, out, err = run(capsys, "import", "dicom", src, "--out", tmp_path / "ds")
    assert rc == 0, err
    ds = tmp_path / "ds"
    assert check_dataset(ds) == [] and has_labels(ds)
    (a, la), (b, lb) = (load_scan(s) for s in scans(ds))
    np.testing.assert_array_equal(la, label)
    np.testing.assert_array_equal(lb, label > 0)
    np.testing.assert_array_equal(b, np.stack([frame_image(1, t) for t in range(6)]))  # InstanceNumber order
    assert json.loads((ds / "dataset.json").read_text())["scans"][f"{SERIES}_2"]["ordered_by"] == "InstanceNumber"
    rc, out, _ = run(capsys, "check", ds)
    assert rc == 0 and "no label" not in out


def test_dicom_bad_inputs(tmp_path, capsys):
    out = ["--out", tmp_path / "ds"]
    src = make_dicom(tmp_path / "a", shuffle=False)
    f = src / "PAT01" / "study" / "IM0003"
    f.write_bytes(dcm(np.zeros((20, 24)), loc=0.0, trigger=97.0, instance=4))  # another size
    one_line_error(capsys, ["dicom", src, *out], "IM0003", "image size 20x24")
    f.write_bytes(dcm(frame_image(0, 3), loc=0.0, trigger=None, instance=4))  # TriggerTime on the others only
    one_line_error(capsys, ["dicom", src, *out], "IM0003", "lacks TriggerTime")
    f.write_bytes(dcm(frame_image(0, 3), loc=0.0, trigger=37.0, instance=4))  # same TriggerTime as frame 1
    one_line_error(capsys, ["dicom", src, *out], "TriggerTime 37 ms repeats")
    f.unlink()  # slice 0 now has 5 frames, slice 1 has 6
    one_line_error(capsys, ["dicom", src, *out], "5 frames, expected 6")
    f.write_bytes(b"\x00" * 50)
    one_line_error(capsys, ["dicom", src, *out], "IM0003", "not a DICOM")
    f.write_bytes(dcm(frame_image(0, 3), loc=0.0, trigger=97.0, instance=4)[:-100])  # truncated pixel data
    one_line_error(capsys, ["dicom", src, *out], "IM0003")
    f.write_bytes(dcm(frame_image(0, 3), loc=0.0, trigger=97.0, instance=4))
    mask = src / "masks" / f"{SERIES}_1.png"
    bad = np.zeros((24, 24), np.uint8)
    bad[1, 1] = 7
    write_png(mask, bad)
    one_line_error(capsys, ["dicom", src, *out], mask.name, "found 7")
    write_png(mask, np.zeros((24, 20), np.uint8))
    one_line_error(capsys, ["dicom", src, *out], mask.name, "does not match")
    mask.unlink()
    write_png(src / "masks" / f"{SERIES}_3.png", np.zeros((24, 24), np.uint8))
    one_line_error(capsys, ["dicom", src, *out], f"{SERIES}_3.png", "names no scan")
    assert not (tmp_path / "ds").exists()


def test_force_import_replaces_stale_split(tmp_path, capsys):
    """An authors import writes split.csv; a --force DICOM import into the same folder removes it."""
    assert run(capsys, "import", "authors", make_authors(tmp_path / "a"), "--out", tmp_path / "ds")[0] == 0
    assert (tmp_path / "ds" / "split.csv").exists()
    src = make_dicom(tmp_path / "b")
    one_line_error(capsys, ["dicom", src, "--out", tmp_path / "ds"], "--force")
    assert run(capsys, "import", "dicom", src, "--out", tmp_path / "ds", "--force")[0] == 0
    assert not (tmp_path / "ds" / "split.csv").exists()
    assert run(capsys, "check", tmp_path / "ds")[0] == 0


@pytest.mark.parametrize("fmt", ["authors", "acdc", "dicom"])
def test_help_lists_the_formats(fmt, capsys):
    with pytest.raises(SystemExit) as exc:
        cli_main(["import", fmt, "--help"])
    assert exc.value.code == 0
    assert "--out" in capsys.readouterr().out


def test_dicom_real_sunnybrook_patient(tmp_path, capsys):
    """The generic importer on a real (GE) cine: 240 files -> 12 slices x 20 frames, predict-only."""
    import tarfile

    import pydicom

    tarball = Path(__file__).resolve().parents[2] / "shared" / "data" / "sunnybrook" / "dicoms" / "SCD0000101.tar.gz"
    if not tarball.is_file():
        pytest.skip(f"real Sunnybrook data not present at {tarball}")
    with tarfile.open(tarball) as tar:
        tar.extractall(tmp_path / "src", filter="data")
    rc, out, err = run(capsys, "import", "dicom", tmp_path / "src", "--out", tmp_path / "ds")
    assert rc == 0, err
    assert "12 scans of 1 subjects (12 without a label" in out
    first = pydicom.dcmread(tmp_path / "src" / "SCD0000101" / "1.dcm")
    m = read_manifest(tmp_path / "ds")
    assert np.allclose(m.spacing_row, float(first.PixelSpacing[0]))
    cine, label = load_scan(scans(tmp_path / "ds")[0])
    assert label is None and cine.shape == (20, 256, 256)
    np.testing.assert_array_equal(cine[0], first.pixel_array)  # 1.dcm: first slice, first TriggerTime
    assert run(capsys, "check", tmp_path / "ds")[0] == 0


def test_contract_with_some_unlabeled_scans(tiny_dataset, capsys):
    """An empty label cell: load_scan gives (cine, None), check passes with one summary line, split still works,
    and asking for the label (scoring) is one clear line."""
    import pandas as pd

    from ssnet.data.contract import load_label, unlabeled_scan_ids
    from ssnet.data.split import subject_table
    from ssnet.errors import SsnetError

    ds = tiny_dataset
    m = pd.read_csv(ds / "manifest.csv", dtype=str, keep_default_na=False)
    m.loc[m.scan_id == "P00_sl0", "label"] = ""  # P00_sl0 holds the MVO of P00
    m["extra"] = "kept"
    m.to_csv(ds / "manifest.csv", index=False)
    assert unlabeled_scan_ids(ds) == ["P00_sl0"] and not has_labels(ds)
    assert read_manifest(ds)["extra"].eq("kept").all()
    sc = scans(ds)
    cine, label = load_scan(sc[0])
    assert label is None and cine.shape == (6, 48, 48)
    assert load_scan(sc[1])[1] is not None
    with pytest.raises(SsnetError, match="P00_sl0.*no label"):
        load_label(sc[0])
    rc, out, err = run(capsys, "check", ds)
    assert rc == 0 and "1 of 12 scans have no label" in out and "P00_sl0" in out
    t = subject_table(ds).set_index("subject_id")
    assert not t.loc["P00", "has_mvo"] and t.loc["P02", "has_mvo"]  # unlabeled counts as MVO-negative
