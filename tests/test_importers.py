"""Importers: Sunnybrook DICOM (real data when present, synthetic otherwise), TIFF/PNG and NIfTI layouts,
and one clear error line (naming the file) for every corrupt or inconsistent input."""
from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest

from ssnet.cli import main as cli_main
from ssnet.data.contract import check_dataset, load_scan, read_manifest, scans
from ssnet.errors import SsnetError

# the real data lies in ../shared beside the checkout (also in CI's clone); $SSNET_SUNNYBROOK overrides
SUNNYBROOK = Path(os.environ.get("SSNET_SUNNYBROOK", Path(__file__).resolve().parents[2] / "shared" / "data" / "sunnybrook"))


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = cli_main(["import", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(capsys, argv: list, *needles: str) -> str:
    rc, out, err = run_cli(capsys, *argv)
    assert rc == 1, (rc, out, err)
    assert "Traceback" not in err and "Traceback" not in out
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("ssnet import: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


# ------------------------------------------------------------------------------ synthetic Sunnybrook tree
def dicom_bytes(pixels: np.ndarray, loc: float, trigger: float, number: int, spacing=(1.25, 1.25), frames=4) -> bytes:
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
    ds.Modality, ds.PatientID = "MR", "SYN0001"
    ds.InstanceNumber, ds.SliceLocation, ds.TriggerTime = number, f"{loc:.3f}", f"{trigger:.3f}"
    ds.CardiacNumberOfImages = frames
    ds.PixelSpacing = [f"{spacing[0]}", f"{spacing[1]}"]
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelData = pixels.astype("<i2").tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def ring_contour(cx: float, cy: float, r: float, n: int = 40) -> str:
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return "\n".join(f"{cx + r * np.cos(t):.2f} {cy + r * np.sin(t):.2f}" for t in a) + "\n"


def make_sunnybrook(root: Path, slices: int = 2, frames: int = 4, size: int = 32, ed: int = 3,
                    as_folder: bool = False, mutate=None) -> Path:
    """A tiny Sunnybrook-like tree: patient SYN0001, ED at 0-based frame ``ed``, blood pool largest there.

    ``mutate(files: dict[str, bytes])`` may edit the DICOM files before they are packed.
    """
    pid, oid = "SYN0001", "SC-SYN-1"
    yy, xx = np.mgrid[:size, :size]
    c = (size - 1) / 2
    r = np.hypot(yy - c, xx - c)
    files: dict[str, bytes] = {}
    for s in range(slices):
        for f in range(frames):
            n = s * frames + f + 1
            pool = size * (0.15 + 0.1 * np.cos(2 * np.pi * (f - ed) / frames))  # largest at ED
            img = np.where(r < pool, 400, np.where(r < size * 0.35, 100, 30)).astype(np.int16)
            files[f"{pid}/{n}.dcm"] = dicom_bytes(img, -10.0 * s, 20.0 + 40 * f, n, frames=frames)
    if mutate is not None:
        mutate(files)
    dicoms = root / "dicoms"
    dicoms.mkdir(parents=True)
    if as_folder:
        for name, data in files.items():
            (dicoms / name).parent.mkdir(parents=True, exist_ok=True)
            (dicoms / name).write_bytes(data)
    else:
        with tarfile.open(dicoms / f"{pid}.tar.gz", "w:gz") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    for kind in ("i", "o"):
        (root / "contours" / oid / f"{kind}-contours").mkdir(parents=True)
    es = (ed + frames // 2) % frames
    for s in range(slices):
        ed_n, es_n = s * frames + ed + 1, s * frames + es + 1
        cdir = root / "contours" / oid
        (cdir / "i-contours" / f"IM-0001-{ed_n:04d}-icontour-manual.txt").write_text(ring_contour(c, c, size * 0.24))
        (cdir / "o-contours" / f"IM-0001-{ed_n:04d}-ocontour-manual.txt").write_text(ring_contour(c, c, size * 0.34))
        (cdir / "i-contours" / f"IM-0001-{es_n:04d}-icontour-manual.txt").write_text(ring_contour(c, c, size * 0.06))
    (root / "link.csv").write_text(f"patient_id,original_id\n{pid},{oid}\n")
    return root


def test_sunnybrook_synthetic_roundtrip(tmp_path, capsys):
    src = make_sunnybrook(tmp_path / "src")
    rc, out, err = run_cli(capsys, "sunnybrook", src, "--out", tmp_path / "ds")
    assert rc == 0, err
    assert check_dataset(tmp_path / "ds") == []
    m = read_manifest(tmp_path / "ds")
    assert list(m.scan_id) == ["SYN0001_sl01", "SYN0001_sl02"] and set(m.subject_id) == {"SYN0001"}
    assert (m.spacing_row == 1.25).all() and (m.spacing_col == 1.25).all()
    info = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert info["patients"]["SYN0001"]["file_numbering_agrees_with_headers"] is True
    assert "MVO" in info["note"]
    for scan in scans(tmp_path / "ds"):
        cine, label = load_scan(scan)
        assert cine.shape == (4, 32, 32) and set(np.unique(label)) == {0, 1}
        pool = (cine > 300).sum(axis=(1, 2))
        assert pool.argmax() == 0  # ED (largest blood pool) rolled to frame 0
        assert info["scans"][scan.scan_id]["es_frame"] == 2
    # a second import into the same folder is refused without --force, allowed with it
    before = {p.name: p.read_bytes() for p in (tmp_path / "ds").rglob("*") if p.is_file()}
    assert_one_line_error(capsys, ["sunnybrook", src, "--out", tmp_path / "ds"], "manifest.csv", "--force")
    # a failing --force import leaves the existing dataset untouched
    broken = make_sunnybrook(tmp_path / "broken", mutate=lambda f: f.update({"SYN0001/7.dcm": b"junk"}))
    assert_one_line_error(capsys, ["sunnybrook", broken, "--out", tmp_path / "ds", "--force"], "7.dcm")
    assert {p.name: p.read_bytes() for p in (tmp_path / "ds").rglob("*") if p.is_file()} == before
    assert run_cli(capsys, "sunnybrook", src, "--out", tmp_path / "ds", "--force")[0] == 0
    assert check_dataset(tmp_path / "ds") == []


def test_sunnybrook_ed_checked_against_manifest_json(tmp_path, capsys):
    src = make_sunnybrook(tmp_path / "src")
    (src / "manifest.json").write_text(json.dumps({"patients": {"SYN0001": {"ED_phase_1based": 4}}}))
    assert run_cli(capsys, "sunnybrook", src, "--out", tmp_path / "ok")[0] == 0
    (src / "manifest.json").write_text(json.dumps({"patients": {"SYN0001": {"ED_phase_1based": 2}}}))
    assert_one_line_error(capsys, ["sunnybrook", src, "--out", tmp_path / "ds"], "IM-0001-0004-ocontour", "phase 4")


def test_sunnybrook_headers_beat_file_numbers(tmp_path, capsys):
    """Frames are ordered by TriggerTime, not by file number: swap two files' names, get the same cine."""
    def swap(files):
        a, b = "SYN0001/1.dcm", "SYN0001/2.dcm"
        files[a], files[b] = files[b], files[a]

    src = make_sunnybrook(tmp_path / "src", mutate=swap, as_folder=True)
    ref = make_sunnybrook(tmp_path / "ref", as_folder=True)
    assert run_cli(capsys, "sunnybrook", src, "--out", tmp_path / "a")[0] == 0
    assert run_cli(capsys, "sunnybrook", ref, "--out", tmp_path / "b")[0] == 0
    a, b = scans(tmp_path / "a")[0], scans(tmp_path / "b")[0]
    np.testing.assert_array_equal(load_scan(a)[0], load_scan(b)[0])
    info = json.loads((tmp_path / "a" / "dataset.json").read_text())
    assert info["patients"]["SYN0001"]["file_numbering_agrees_with_headers"] is False


@pytest.mark.parametrize("how", ["truncated_in_tar", "random_in_folder", "empty_in_tar"])
def test_sunnybrook_corrupt_dicom(tmp_path, capsys, how):
    def corrupt(files):
        name = "SYN0001/3.dcm"
        files[name] = {"truncated_in_tar": files[name][: len(files[name]) // 2],
                       "random_in_folder": np.random.default_rng(0).bytes(3000),
                       "empty_in_tar": b""}[how]

    src = make_sunnybrook(tmp_path / "src", mutate=corrupt, as_folder=how == "random_in_folder")
    assert_one_line_error(capsys, ["sunnybrook", src, "--out", tmp_path / "ds"], "3.dcm")
    assert not (tmp_path / "ds").exists()  # a failed import leaves nothing behind


def test_sunnybrook_inconsistent_slices(tmp_path, capsys):
    def drop(files):
        del files["SYN0001/6.dcm"]

    src = make_sunnybrook(tmp_path / "a", mutate=drop)
    assert_one_line_error(capsys, ["sunnybrook", src, "--out", tmp_path / "ds"], "5.dcm", "3 frames, expected 4")

    def resize(files):
        files["SYN0001/2.dcm"] = dicom_bytes(np.zeros((30, 32), np.int16), 0.0, 60.0, 2)

    src = make_sunnybrook(tmp_path / "b", mutate=resize)
    assert_one_line_error(capsys, ["sunnybrook", src, "--out", tmp_path / "ds"], "2.dcm", "image size")


def test_sunnybrook_missing_pieces(tmp_path, capsys):
    src = make_sunnybrook(tmp_path / "src")
    (src / "link.csv").unlink()
    assert_one_line_error(capsys, ["sunnybrook", src, "--out", tmp_path / "ds"], "link.csv")
    (src / "link.csv").write_text("patient_id,original_id\nSYN0001,SC-SYN-1\n")
    bad = src / "contours" / "SC-SYN-1" / "o-contours" / "IM-0001-0004-ocontour-manual.txt"
    bad.write_text("12.0 oops\n")
    assert_one_line_error(capsys, ["sunnybrook", src, "--out", tmp_path / "ds"], bad.name, "line 1")
    assert_one_line_error(capsys, ["sunnybrook", src, "--out", tmp_path / "ds", "--patients", "NOPE"], "NOPE")
    (src / "dicoms" / "SYN0001.tar.gz").write_bytes(b"\x1f\x8b not really gzip")
    assert_one_line_error(capsys, ["sunnybrook", src, "--out", tmp_path / "ds"], "SYN0001.tar.gz")


# -------------------------------------------------------------------------------- real Sunnybrook data
def test_sunnybrook_real_patient(tmp_path, capsys):
    if not (SUNNYBROOK / "dicoms" / "SCD0000101.tar.gz").is_file():
        pytest.skip(f"real Sunnybrook data not present at {SUNNYBROOK}")
    import pydicom

    from ssnet.data.importers.readers import polygon_mask, read_contour

    rc, out, err = run_cli(capsys, "sunnybrook", SUNNYBROOK, "--out", tmp_path / "ds", "--patients", "SCD0000101")
    assert rc == 0, err
    ds = tmp_path / "ds"
    assert check_dataset(ds) == []
    info = json.loads((ds / "dataset.json").read_text())
    meta = json.loads((SUNNYBROOK / "manifest.json").read_text())["patients"]["SCD0000101"]
    m = read_manifest(ds)
    assert len(m) == len(meta["epi_contour_images"]) and set(m.subject_id) == {"SCD0000101"}
    with tarfile.open(SUNNYBROOK / "dicoms" / "SCD0000101.tar.gz") as tar:
        first_ed = info["scans"][m.scan_id[0]]["ed_image"]
        dcm = pydicom.dcmread(tar.extractfile(f"SCD0000101/{first_ed}.dcm"))
    # spacing is the DICOM PixelSpacing
    assert np.allclose(m.spacing_row, float(dcm.PixelSpacing[0])) and np.allclose(m.spacing_col, float(dcm.PixelSpacing[1]))
    contours = SUNNYBROOK / "contours" / meta["original_id"]
    ed_pool, es_pool, ratios, ratios_swapped = 0, 0, [], []
    for scan in scans(ds):
        cine, label = load_scan(scan)
        sm = info["scans"][scan.scan_id]
        assert cine.shape == (20, 256, 256) and set(np.unique(label)) == {0, 1}
        # frame 0 is end-diastole: the manifest's ED phase, and the exact image the contours were drawn on
        assert sm["ed_phase_1based"] == meta["ED_phase_1based"]
        if scan.scan_id == m.scan_id[0]:
            np.testing.assert_array_equal(cine[0], dcm.pixel_array.astype(np.float32))
        origin = info["contour_origin"]
        endo = polygon_mask(read_contour(contours / "i-contours" / sm["endocardial_contour"], (256, 256)) - origin, (256, 256))
        # the myocardium ring is darker than the enclosed blood pool at frame 0
        assert cine[0][label == 1].mean() < cine[0][endo].mean()
        ratios.append(cine[0][endo].mean() / cine[0][label == 1].mean())
        ratios_swapped.append(cine[0][endo.T].mean() / cine[0][label.T == 1].mean())  # x/y mix-up guard
        # more bright blood inside the epicardium at ED (frame 0) than at ES
        epi = (label == 1) | endo
        thr = cine[0][endo].mean() * 0.7
        ed_pool += int((cine[0][epi] > thr).sum())
        es_pool += int((cine[sm["es_frame"]][epi] > thr).sum())
        es_endo = polygon_mask(read_contour(contours / "i-contours" / sm["es_endocardial_contour"], (256, 256)) - origin, (256, 256))
        assert sm["es_frame"] == (meta["ES_phase_1based"] - meta["ED_phase_1based"]) % 20
        assert es_endo.sum() < endo.sum() * 1.05
    assert ed_pool > 1.2 * es_pool
    assert np.mean(ratios) > 2 and np.mean(ratios) > np.mean(ratios_swapped) + 0.5


def test_sunnybrook_contours_are_one_based(tmp_path, capsys):
    """Read as 1-based pixel centres (the default), the expert rings sit on the image's dark-myocardium /
    bright-blood boundary (best-contrast shift (0, 0)); read as 0-based they lie one pixel down and right."""
    if not (SUNNYBROOK / "dicoms" / "SCD0000201.tar.gz").is_file():
        pytest.skip(f"real Sunnybrook data not present at {SUNNYBROOK}")
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from label_alignment import best_shift

    medians = {}
    for origin in ("1", "0"):
        out = tmp_path / f"origin{origin}"
        extra = [] if origin == "1" else ["--contour-origin", "0"]
        assert run_cli(capsys, "sunnybrook", SUNNYBROOK, "--out", out, "--patients", "SCD0000201", *extra)[0] == 0
        assert json.loads((out / "dataset.json").read_text())["contour_origin"] == float(origin)
        shifts = [best_shift(cine[0].astype(float), label == 1, 3)[:2] for cine, label in map(load_scan, scans(out))]
        medians[origin] = tuple(np.median(np.array(shifts), axis=0))
    assert medians == {"1": (0.0, 0.0), "0": (-1.0, -1.0)}


def test_sunnybrook_contour_origin_shifts_the_label_by_whole_pixels(tmp_path, capsys):
    src = make_sunnybrook(tmp_path / "src", size=32)
    for origin in ("0", "1"):
        assert run_cli(capsys, "sunnybrook", src, "--out", tmp_path / origin, "--contour-origin", origin)[0] == 0
    (_, zero), (_, one) = (load_scan(next(iter(scans(tmp_path / o)))) for o in ("0", "1"))
    assert one.any() and np.array_equal(one, np.roll(zero, (-1, -1), (0, 1)))


# --------------------------------------------------------------------------------------- TIFF / PNG
def write_png(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def toy_scan(size=(24, 20), frames=5, seed=0):
    rng = np.random.default_rng(seed)
    cine = rng.integers(0, 255, size=(frames, *size), dtype=np.uint8)
    label = np.zeros(size, np.uint8)
    label[5:15, 4:12] = 1
    label[7:10, 5:8] = 2
    label[8, 6] = 3
    return cine, label


def make_tiff_tree(root: Path) -> Path:
    import tifffile

    for k, (subj, scan) in enumerate([("P1", "P1_a"), ("P1", "P1_b"), ("P2", "P2_a")]):
        cine, label = toy_scan(seed=k)
        d = root / subj / scan
        d.mkdir(parents=True)
        if scan == "P1_b":
            for t in range(cine.shape[0]):
                write_png(d / "frames" / f"f{t}.png", cine[t])  # f10 would sort after f9 (natural order)
            tifffile.imwrite(d / "label.tif", label)
        else:
            tifffile.imwrite(d / "cine.tif", cine)
            write_png(d / "label.png", label)
    (root / "spacing.csv").write_text("scan_id,spacing_row,spacing_col\nP1_a,1.5,1.25\n")
    return root


def test_tiff_import(tmp_path, capsys):
    src = make_tiff_tree(tmp_path / "src")
    rc, out, err = run_cli(capsys, "tiff", src, "--out", tmp_path / "ds")
    assert rc == 0, err
    assert check_dataset(tmp_path / "ds") == []
    m = read_manifest(tmp_path / "ds").set_index("scan_id")
    assert list(m.index) == ["P1_a", "P1_b", "P2_a"] and list(m.subject_id) == ["P1", "P1", "P2"]
    assert m.loc["P1_a", "spacing_row"] == 1.5 and m.loc["P1_a", "spacing_col"] == 1.25
    assert np.isnan(m.loc["P2_a", "spacing_row"])
    for k, scan in enumerate(scans(tmp_path / "ds")):
        cine, label = load_scan(scan)
        ref_cine, ref_label = toy_scan(seed=k)
        np.testing.assert_array_equal(cine, ref_cine)
        np.testing.assert_array_equal(label, ref_label)


def test_tiff_png_details(tmp_path, capsys):
    """Frames sort naturally (f2 before f10); grey stored as RGB is accepted, real colour refused."""
    cine, label = toy_scan(frames=12)
    d = tmp_path / "src" / "S" / "S_x"
    for t in range(12):
        write_png(d / "frames" / f"f{t}.png", np.repeat(cine[t][..., None], 3, axis=-1))
    write_png(d / "label.png", label)
    assert run_cli(capsys, "tiff", tmp_path / "src", "--out", tmp_path / "ds")[0] == 0
    np.testing.assert_array_equal(load_scan(scans(tmp_path / "ds")[0])[0], cine)
    rgb = np.stack([label, label, label * 0], axis=-1)
    write_png(d / "label.png", rgb)
    assert_one_line_error(capsys, ["tiff", tmp_path / "src", "--out", tmp_path / "ds2"], "label.png", "colour")


def test_tiff_errors(tmp_path, capsys):
    import tifffile

    src = make_tiff_tree(tmp_path / "src")
    out = ["--out", tmp_path / "ds"]
    cine_tif = src / "P1" / "P1_a" / "cine.tif"
    good = cine_tif.read_bytes()
    cine_tif.write_bytes(np.random.default_rng(1).bytes(500))  # random bytes
    assert_one_line_error(capsys, ["tiff", src, *out], "cine.tif", "cannot read TIFF")
    cine_tif.write_bytes(good[: len(good) // 2])  # truncated: must not pass as a shorter cine
    assert_one_line_error(capsys, ["tiff", src, *out], "cine.tif", "truncated TIFF")
    cine_tif.write_bytes(good)

    frame = src / "P1" / "P1_b" / "frames" / "f2.png"
    png = frame.read_bytes()
    frame.write_bytes(png[: len(png) // 2])  # truncated PNG
    assert_one_line_error(capsys, ["tiff", src, *out], "f2.png")
    write_png(frame, np.zeros((10, 10), np.uint8))  # one frame of another size
    assert_one_line_error(capsys, ["tiff", src, *out], "f2.png", "size")
    frame.write_bytes(png)

    label = src / "P2" / "P2_a" / "label.png"
    label.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)  # corrupt PNG
    assert_one_line_error(capsys, ["tiff", src, *out], "label.png")
    write_png(label, np.zeros((12, 20), np.uint8))  # size mismatch
    assert_one_line_error(capsys, ["tiff", src, *out], "label.png", "does not match")
    bad = toy_scan()[1]
    bad[0, 0] = 7
    write_png(label, bad)  # value outside 0..3
    assert_one_line_error(capsys, ["tiff", src, *out], "label.png", "7")
    label.unlink()
    assert_one_line_error(capsys, ["tiff", src, *out], "P2_a", "missing label")
    write_png(label, toy_scan()[1])
    tifffile.imwrite(src / "P2" / "P2_a" / "cine.tif", np.zeros((1, 24, 20), np.uint8))
    assert_one_line_error(capsys, ["tiff", src, *out], "cine.tif", "at least 2")
    assert not (tmp_path / "ds").exists()


# -------------------------------------------------------------------------------------------- NIfTI
def make_nifti_folder(root: Path, pattern_subject: bool = False) -> Path:
    from ssnet.io import save_nifti

    root.mkdir(parents=True)
    for k, name in enumerate(["A01_s1", "A01_s2", "B02_s1"]):
        cine, label = toy_scan(seed=k)
        stem = name if not pattern_subject else name  # same names; the pattern decides how they split
        save_nifti(root / f"{stem}_cine.nii.gz", np.moveaxis(cine, 0, -1)[:, :, None, :], (1.1, 1.2))  # (H, W, 1, T)
        save_nifti(root / f"{stem}_label.nii.gz", label[..., None].astype(np.int16), (1.1, 1.2))
    return root


def test_nifti_import(tmp_path, capsys):
    src = make_nifti_folder(tmp_path / "src")
    rc, out, err = run_cli(capsys, "nifti", src, "--out", tmp_path / "ds")
    assert rc == 0, err
    assert check_dataset(tmp_path / "ds") == []
    m = read_manifest(tmp_path / "ds")
    assert list(m.scan_id) == ["A01_s1", "A01_s2", "B02_s1"] and list(m.subject_id) == ["A01", "A01", "B02"]
    assert np.allclose(m.spacing_row, 1.1) and np.allclose(m.spacing_col, 1.2)
    cine, label = load_scan(scans(tmp_path / "ds")[2])
    np.testing.assert_array_equal(cine, toy_scan(seed=2)[0])
    np.testing.assert_array_equal(label, toy_scan(seed=2)[1])
    # subjects.csv overrides the prefix rule
    (src / "subjects.csv").write_text("scan_id,subject_id\nA01_s1,X\nA01_s2,X\nB02_s1,Y\n")
    assert run_cli(capsys, "nifti", src, "--out", tmp_path / "ds2")[0] == 0
    assert list(read_manifest(tmp_path / "ds2").subject_id) == ["X", "X", "Y"]
    # an explicit pattern with {subject}
    (src / "subjects.csv").unlink()
    assert run_cli(capsys, "nifti", src, "--out", tmp_path / "ds3", "--pattern", "{subject}_{scan}_cine.nii.gz")[0] == 0
    m3 = read_manifest(tmp_path / "ds3")
    assert list(m3.scan_id) == ["A01_s1", "A01_s2", "B02_s1"] and list(m3.subject_id) == ["A01", "A01", "B02"]


def test_nifti_errors(tmp_path, capsys):
    from ssnet.io import save_nifti

    src = make_nifti_folder(tmp_path / "src")
    out = ["--out", tmp_path / "ds"]
    cine = src / "A01_s2_cine.nii.gz"
    good = cine.read_bytes()
    cine.write_bytes(good[: len(good) // 2])  # truncated gzip
    assert_one_line_error(capsys, ["nifti", src, *out], "A01_s2_cine.nii.gz", "cannot read NIfTI")
    cine.write_bytes(gzip.compress(np.random.default_rng(2).bytes(1000)))  # random payload
    assert_one_line_error(capsys, ["nifti", src, *out], "A01_s2_cine.nii.gz")
    cine.write_bytes(good)

    label = src / "B02_s1_label.nii.gz"
    save_nifti(label, np.zeros((20, 24), np.uint8))  # transposed size
    assert_one_line_error(capsys, ["nifti", src, *out], "B02_s1_label.nii.gz", "does not match")
    bad = toy_scan()[1]
    bad[3, 3] = 7
    save_nifti(label, bad)
    assert_one_line_error(capsys, ["nifti", src, *out], "B02_s1_label.nii.gz", "found 7")
    label.unlink()
    assert_one_line_error(capsys, ["nifti", src, *out], "B02_s1_cine.nii.gz", "without a label")
    assert not (tmp_path / "ds").exists()


def test_readers_raise_ssnet_error_only(tmp_path):
    """The readers never leak library exceptions."""
    from ssnet.data.importers import readers

    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00" * 64)
    for fn in (readers.read_tiff_frames, readers.read_png, readers.read_nifti):
        with pytest.raises(SsnetError, match="junk.bin"):
            fn(junk)
    with pytest.raises(SsnetError, match="missing.tif"):
        readers.read_tiff_frames(tmp_path / "missing.tif")


def test_benchmark_reimports_a_dataset_made_with_zero_based_contours(tmp_path, capsys):
    from ssnet.sunnybrook import ensure_import

    src = make_sunnybrook(tmp_path / "src")
    assert run_cli(capsys, "sunnybrook", src, "--out", tmp_path / "ds", "--contour-origin", "0")[0] == 0
    old = load_scan(next(iter(scans(tmp_path / "ds"))))[1]
    ensure_import(src, tmp_path / "ds")
    assert "importing again" in capsys.readouterr().err
    assert json.loads((tmp_path / "ds" / "dataset.json").read_text())["contour_origin"] == 1.0
    assert np.array_equal(load_scan(next(iter(scans(tmp_path / "ds"))))[1], np.roll(old, (-1, -1), (0, 1)))
    ensure_import(src, tmp_path / "ds")  # current: reused as it is
    assert "importing again" not in capsys.readouterr().err
