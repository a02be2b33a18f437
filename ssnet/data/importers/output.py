"""Writing an imported dataset: the ``--out`` guard, a staging folder, and the manifest last.

:class:`DatasetWriter` writes every scan into a hidden staging folder inside ``--out``
(``.ssnet-import-XXXX/``). Only when every input has been read and validated are the files moved into
``cines/`` and ``labels/`` (one ``os.replace`` each), then ``dataset.json`` and, last, ``manifest.csv`` are
written atomically. A failed import therefore leaves ``--out`` exactly as it was (an existing dataset stays
intact even with ``--force``), and a folder without ``manifest.csv`` is never taken for a dataset.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ssnet.data.contract import write_manifest
from ssnet.errors import input_error
from ssnet.io import atomic_write_json, save_nifti

_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_id(value: str, what: str, where: Path | str) -> str:
    """Scan and subject ids become file names: letters, digits, ``. _ -`` only."""
    if not _SAFE_ID.match(value):
        raise input_error(where, f"{what} {value!r} is not usable as a file name (letters, digits, '.', '_', '-')")
    return value


def check_out(out: Path, force: bool, src: Path | None = None) -> None:
    """Refuse an ``--out`` that already holds ``manifest.csv`` unless ``force`` (checked before any reading)."""
    out = Path(out)
    if src is not None and out.resolve() == Path(src).resolve():
        raise input_error(out, "--out must differ from the source folder")
    if out.exists() and not out.is_dir():
        raise input_error(out, "--out exists and is not a folder")
    if (out / "manifest.csv").exists() and not force:
        raise input_error(out / "manifest.csv", "already exists; refusing to overwrite a dataset (use --force)")


class DatasetWriter:
    """Context manager collecting scans in a staging folder; :meth:`commit` publishes them.

    Leaving the ``with`` block without a commit (an error) removes the staging folder, and ``--out`` itself
    when this writer created it and it is still empty.
    """

    def __init__(self, out: Path, force: bool, src: Path | None = None) -> None:
        check_out(out, force, src)
        self.out, self.force = Path(out), force
        self.rows: list[dict] = []
        self.created = not self.out.exists()
        self.out.mkdir(parents=True, exist_ok=True)
        self.stage = Path(tempfile.mkdtemp(prefix=".ssnet-import-", dir=self.out))

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.stage, ignore_errors=True)
        if self.created and self.out.is_dir() and not any(self.out.iterdir()):
            self.out.rmdir()

    def add(self, scan_id: str, subject_id: str, cine: np.ndarray, label: np.ndarray,
            spacing: tuple[float, float] | None) -> dict:
        """Stage ``cines/<scan_id>.nii.gz`` (H, W, T) and ``labels/<scan_id>.nii.gz`` (H, W) uint8."""
        assert cine.ndim == 3 and label.shape == cine.shape[:2], (cine.shape, label.shape)
        if any(r["scan_id"] == scan_id for r in self.rows):
            raise input_error(self.out, f"two scans would share scan_id {scan_id!r}")
        cine_rel, label_rel = f"cines/{scan_id}.nii.gz", f"labels/{scan_id}.nii.gz"
        save_nifti(self.stage / cine_rel, np.ascontiguousarray(cine), spacing)
        save_nifti(self.stage / label_rel, np.ascontiguousarray(label.astype(np.uint8)), spacing)
        row = {"scan_id": scan_id, "subject_id": subject_id, "cine": cine_rel, "label": label_rel,
               "spacing_row": "" if spacing is None else float(spacing[0]),
               "spacing_col": "" if spacing is None else float(spacing[1])}
        self.rows.append(row)
        return row

    def commit(self, provenance: dict) -> None:
        """Move the staged files into place, then write ``dataset.json`` and, last, ``manifest.csv``."""
        from ssnet import __version__

        if not self.rows:
            raise input_error(self.out, "nothing to import: no scan was found")
        check_out(self.out, self.force)  # nobody wrote a dataset here meanwhile
        provenance.setdefault("ssnet_version", __version__)
        provenance.setdefault("n_scans", len(self.rows))
        provenance.setdefault("n_subjects", len({r["subject_id"] for r in self.rows}))
        manifest = self.out / "manifest.csv"
        if manifest.exists():
            manifest.unlink()  # from here until the new manifest is written the folder is not a dataset
        for sub in ("cines", "labels"):
            (self.out / sub).mkdir(exist_ok=True)
        for r in self.rows:
            for rel in (r["cine"], r["label"]):
                os.replace(self.stage / rel, self.out / rel)
        atomic_write_json(provenance, self.out / "dataset.json")
        write_manifest(self.out, self.rows)
