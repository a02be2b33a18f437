"""``ssnet import sunnybrook SRC --out DIR``: Sunnybrook Cardiac Data (DICOM cine + expert LV contours).

Source layout (as in ``shared/data/sunnybrook``)::

    SRC/dicoms/<patient>.tar.gz          DICOM images of one patient (or an extracted folder SRC/dicoms/<patient>/)
    SRC/contours/<original_id>/i-contours/IM-0001-<nnnn>-icontour-manual.txt   endocardium (ED and ES)
    SRC/contours/<original_id>/o-contours/IM-0001-<nnnn>-ocontour-manual.txt   epicardium (ED)
    SRC/link.csv                         patient_id,original_id   (SCD0000101,SC-HF-I-1)
    SRC/manifest.json                    optional: per-patient ED_phase_1based, checked against the contours

What the importer does, per patient:

- reads every DICOM (tarball members are read directly, nothing is extracted to disk), groups the images
  into slices by ``SliceLocation`` and orders each slice's frames by ``TriggerTime``; every slice must have
  the same number of frames (``CardiacNumberOfImages`` when present), one image size and one pixel spacing;
- checks that the file-number rule (``n.dcm`` -> slice ``(n-1)//T``, frame ``(n-1)%T``) agrees with the headers
  (recorded in ``dataset.json``; the headers win when they disagree);
- maps contour ``IM-0001-<n>`` to image ``n.dcm`` and keeps every slice that has both an endocardial and an
  epicardial contour on the same image: that image's frame is end-diastole (checked against
  ``manifest.json``'s ``ED_phase_1based`` when given);
- writes one scan per such slice: cine (H, W, T) int16 rolled so that ED is frame 0, and label (H, W) with
  1 = fill(epicardium) minus fill(endocardium) (pixel centres inside the polygon; x = column, y = row).
  Contour coordinates are **1-based** pixel centres (``contour_origin=1``, the default: point (1, 1) is the
  centre of the top-left pixel), measured on the shared patients: the expert rings sit on the image's dark
  myocardium / bright blood boundary when shifted by exactly -1 pixel in x and y (every patient; 0.25 px search,
  ``benchmarks/label_alignment.py``), while read as 0-based they lie one pixel down and right of it.
  ``--contour-origin 0`` reads them as 0-based (the importer's behaviour before 2026-12-06).
  There are no infarct or MVO labels in this data: classes 2 and 3 never occur (``dataset.json`` says so).

Scan ids are ``<patient>_sl<kk>``, slices numbered 1.. in acquisition order; subject_id = patient id;
spacing = DICOM PixelSpacing (row, column).
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ssnet.data.importers.output import DatasetWriter, check_id
from ssnet.data.importers.readers import (
    DicomSlice, group_dicom_slices, iter_dicom_sources, natural_key, polygon_mask, read_contour, read_dicom,
)

Contours = dict[int, dict[int, dict[str, Path]]]  # slice index -> frame -> {"i": path, "o": path}
from ssnet.errors import input_error

CITATION = ("Radau P, Lu Y, Connelly K, Paul G, Dick AJ, Wright GA. Evaluation Framework for Algorithms "
            "Segmenting Short Axis Cardiac MRI. The MIDAS Journal - Cardiac MR Left Ventricle Segmentation "
            "Challenge, 2009.")
_CONTOUR = re.compile(r"IM-\d+-(\d+)-([io])contour", re.IGNORECASE)
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def _patient_sources(src: Path) -> dict[str, Path]:
    dicoms = src / "dicoms"
    if not dicoms.is_dir():
        raise input_error(dicoms, "folder not found (expected SRC/dicoms/<patient>.tar.gz)")
    found: dict[str, Path] = {}
    for p in sorted(dicoms.iterdir()):
        if p.name.startswith("."):
            continue
        name = p.name
        suffix = next((s for s in _ARCHIVE_SUFFIXES if name.lower().endswith(s)), None)
        if p.is_file() and suffix:
            pid = name[: -len(suffix)]
        elif p.is_dir():
            pid = name
        else:
            continue
        if pid in found:
            raise input_error(p, f"patient {pid} is present twice ({found[pid].name} and {p.name})")
        found[pid] = p
    if not found:
        raise input_error(dicoms, "no patient tarballs (<patient>.tar.gz) or folders found")
    return found


def _read_link(src: Path) -> dict[str, str]:
    path = src / "link.csv"
    if not path.is_file():
        raise input_error(path, "file not found (maps patient ids to contour folder names)")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise input_error(path, f"malformed CSV ({type(exc).__name__}: {exc})") from exc
    cols = [c.strip() for c in df.columns]
    if "patient_id" not in cols or "original_id" not in cols:
        raise input_error(path, f"expected columns patient_id,original_id; found {','.join(cols)}")
    df.columns = cols
    return {r.patient_id.strip(): r.original_id.strip() for r in df.itertuples(index=False)}


def _read_ed_phases(src: Path) -> dict[str, int]:
    path = src / "manifest.json"
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        return {pid: int(p["ED_phase_1based"]) for pid, p in meta.get("patients", {}).items() if "ED_phase_1based" in p}
    except Exception as exc:
        raise input_error(path, f"malformed manifest.json ({type(exc).__name__}: {exc})") from exc


def _file_rule_agrees(slices: list[DicomSlice]) -> bool | None:
    """Does ``n.dcm`` -> (slice (n-1)//T, frame (n-1)%T) match the header-derived order? None if not checkable."""
    if any(im.number is None for s in slices for im in s.frames):
        return None
    t = len(slices[0].frames)
    return all((im.number - 1) // t == s.index - 1 and (im.number - 1) % t == f
               for s in slices for f, im in enumerate(s.frames))


def _attach_contours(slices: list[DicomSlice], folder: Path, pid: str) -> Contours:
    contours: Contours = {s.index: {} for s in slices}
    by_number: dict[int, tuple[DicomSlice, int]] = {}
    use_file_numbers = all(im.number is not None for s in slices for im in s.frames)
    for s in slices:
        for f, im in enumerate(s.frames):
            n = im.number if use_file_numbers else im.instance
            if n is not None:
                by_number[n] = (s, f)
    found = 0
    for kind in ("i", "o"):
        sub = folder / f"{kind}-contours"
        if not sub.is_dir():
            raise input_error(sub, f"folder not found (contours of patient {pid})")
        for p in sorted(sub.iterdir(), key=lambda p: natural_key(p.name)):
            m = _CONTOUR.search(p.name)
            if not p.is_file() or m is None:
                continue
            if m.group(2).lower() != kind:
                raise input_error(p, f"{m.group(2)}-contour file inside {sub.name}/")
            n = int(m.group(1))
            if n not in by_number:
                raise input_error(p, f"contour refers to image {n}, which patient {pid} does not have")
            s, f = by_number[n]
            contours[s.index].setdefault(f, {})[kind] = p
            found += 1
    if not found:
        raise input_error(folder, f"no contour files (IM-0001-<n>-icontour-manual.txt) for patient {pid}")
    return contours


CONTOUR_ORIGIN = 1.0  # the contour files' pixel-centre coordinate of the top-left pixel (1-based, see above)


def import_patient(pid: str, source: Path, contour_dir: Path, ed_phase: int | None,
                   contour_origin: float = CONTOUR_ORIGIN) -> tuple[list[dict], dict]:
    """Read one patient; return ``(scans, info)`` where each scan holds its arrays and metadata.

    ``contour_origin``: the coordinate the contour files give the top-left pixel's centre (subtracted)."""
    images = [read_dicom(data, name, base) for name, base, data in iter_dicom_sources(source)]
    if not images:
        raise input_error(source, "no DICOM files (*.dcm) found")
    slices = group_dicom_slices(images, source)
    agrees = _file_rule_agrees(slices)
    if agrees is False:
        print(f"ssnet import: warning: {source}: file numbering disagrees with SliceLocation/TriggerTime; "
              "using the DICOM headers", file=sys.stderr)
    contours = _attach_contours(slices, contour_dir, pid)
    scans, skipped = [], []
    for s in slices:
        sc_contours = contours[s.index]
        both = sorted(f for f, c in sc_contours.items() if "i" in c and "o" in c)
        if not both:
            skipped.append({"slice": s.index, "location_mm": s.location,
                            "reason": "no frame with both endocardial and epicardial contours" if sc_contours
                            else "no contours on any frame (no expert label)"})
            continue
        if len(both) > 1 and ed_phase is not None and (ed_phase - 1) in both:
            ed = ed_phase - 1
        else:
            ed = both[0]
        epi_path, endo_path = sc_contours[ed]["o"], sc_contours[ed]["i"]
        if ed_phase is not None and ed + 1 != ed_phase:
            raise input_error(epi_path, f"the ED contour lies on phase {ed + 1} (by TriggerTime) but manifest.json "
                                        f"gives ED_phase_1based = {ed_phase} for {pid}")
        shape = (s.frames[0].rows, s.frames[0].cols)
        epi = polygon_mask(read_contour(epi_path, shape) - contour_origin, shape)
        endo = polygon_mask(read_contour(endo_path, shape) - contour_origin, shape)
        myo = epi & ~endo
        if not myo.any():
            raise input_error(epi_path, "epicardium minus endocardium is empty (contours identical or swapped?)")
        label = myo.astype(np.uint8)
        cine = np.stack([im.pixels for im in s.frames], axis=-1)
        t = cine.shape[-1]
        cine = np.roll(cine, -ed, axis=-1)
        es = [f for f, c in sc_contours.items() if f != ed and "i" in c]
        scan_id = check_id(f"{pid}_sl{s.index:02d}", "scan id", source)
        meta = {
            "slice": s.index, "slice_location_mm": s.frames[0].slice_location, "ed_image": s.frames[ed].number if s.frames[ed].number is not None else s.frames[ed].instance,
            "ed_phase_1based": ed + 1, "frames": t,
            "trigger_time_ms": [round(s.frames[(f + ed) % t].trigger_time, 3) for f in range(t)],
            "epicardial_contour": epi_path.name, "endocardial_contour": endo_path.name,
            "myocardium_pixels": int(myo.sum()), "endo_pixels_outside_epi": int((endo & ~epi).sum()),
        }
        if es:
            meta["es_frame"] = int((es[0] - ed) % t)  # index in the rolled cine
            meta["es_endocardial_contour"] = sc_contours[es[0]]["i"].name
        scans.append({"scan_id": scan_id, "subject_id": pid, "cine": cine, "label": label,
                      "spacing": s.frames[0].spacing, "meta": meta})
    info = {"dicom_source": source.name, "n_images": len(images), "n_slices": len(slices),
            "frames_per_slice": len(slices[0].frames), "rows": slices[0].frames[0].rows,
            "cols": slices[0].frames[0].cols, "file_numbering_agrees_with_headers": agrees,
            "ed_phase_1based_manifest": ed_phase, "scans": [sc["scan_id"] for sc in scans],
            "skipped_slices": skipped}
    return scans, info


def import_sunnybrook(src: Path, out: Path, patients: list[str] | None = None, force: bool = False,
                      contour_origin: float = CONTOUR_ORIGIN) -> dict:
    """Import Sunnybrook patients from ``src`` into the dataset folder ``out``; returns dataset.json's content."""
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise input_error(src, "source folder not found")
    sources = _patient_sources(src)
    link = _read_link(src)
    ed_phases = _read_ed_phases(src)
    if patients:
        unknown = [p for p in patients if p not in sources]
        if unknown:
            raise input_error(src / "dicoms", f"patient {unknown[0]} not found; available: {', '.join(sources)}")
        chosen = list(dict.fromkeys(patients))
    else:
        chosen = list(sources)
    for pid in chosen:
        check_id(pid, "patient id", sources[pid])
        if pid not in link:
            raise input_error(src / "link.csv", f"no row for patient {pid}")
    writer = DatasetWriter(out, force, src)
    with writer:
        per_patient, per_scan = {}, {}
        for pid in chosen:
            contour_dir = src / "contours" / link[pid]
            if not contour_dir.is_dir():
                raise input_error(contour_dir, f"contour folder of patient {pid} not found")
            scans, info = import_patient(pid, sources[pid], contour_dir, ed_phases.get(pid), contour_origin)
            info["original_id"] = link[pid]
            per_patient[pid] = info
            for sc in scans:
                writer.add(sc["scan_id"], pid, sc["cine"], sc["label"], sc["spacing"])
                per_scan[sc["scan_id"]] = sc["meta"]
            del scans
        provenance = {
            "source": "Sunnybrook Cardiac Data (SCD), LV Segmentation Challenge 2009",
            "importer": "ssnet import sunnybrook", "src": str(src), "patients": per_patient, "scans": per_scan,
            "citation": CITATION, "license": "CC0 1.0 (public domain); please cite Radau et al. 2009",
            "frame_0": "end-diastole: the frame whose image carries both the endocardial and epicardial contour; "
                       "frames ordered by DICOM TriggerTime and rolled so that ED comes first",
            "labels": {"0": "background", "1": "LV myocardium = fill(epicardial contour) minus fill(endocardial "
                                                "contour), pixel centres, at ED"},
            "contour_origin": contour_origin,
            "contour_coordinates": f"x = column, y = row; pixel centres, the top-left pixel at ({contour_origin:g}, "
                                   f"{contour_origin:g})",
            "labels_absent": {"2": "infarct", "3": "mvo"},
            "note": "The Sunnybrook data has no infarct, scar or MVO labels: classes 2 and 3 never occur. Use it to "
                    "check myocardium segmentation and real-data loading, not to train or score MVO.",
            "cine": "int16 DICOM stored values (no rescale), (H, W, T)",
        }
        writer.commit(provenance)
        return provenance
