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

    def add(self, scan_id: str, subject_id: str, cine: np.ndarray, label: np.ndarray | None,
            spacing: tuple[float, float] | None, **extra) -> dict:
        """Stage ``cines/<scan_id>.nii.gz`` (H, W, T) and ``labels/<scan_id>.nii.gz`` (H, W) uint8.

        ``label`` None writes no label file and leaves the manifest's ``label`` cell empty; ``extra`` keys become
        extra manifest columns (e.g. ``group``).
        """
        assert cine.ndim == 3 and (label is None or label.shape == cine.shape[:2]), (cine.shape, getattr(label, "shape", None))
        if any(r["scan_id"] == scan_id for r in self.rows):
            raise input_error(self.out, f"two scans would share scan_id {scan_id!r}")
        cine_rel = f"cines/{scan_id}.nii.gz"
        label_rel = "" if label is None else f"labels/{scan_id}.nii.gz"
        save_nifti(self.stage / cine_rel, np.ascontiguousarray(cine), spacing)
        if label is not None:
            save_nifti(self.stage / label_rel, np.ascontiguousarray(label.astype(np.uint8)), spacing)
        row = {"scan_id": scan_id, "subject_id": subject_id, "cine": cine_rel, "label": label_rel,
               "spacing_row": "" if spacing is None else float(spacing[0]),
               "spacing_col": "" if spacing is None else float(spacing[1]), **extra}
        self.rows.append(row)
        return row

    def commit(self, provenance: dict, split: dict[str, str] | None = None) -> None:
        """Move the staged files into place, then write ``dataset.json``, ``split.csv`` and, last, ``manifest.csv``.

        ``split`` maps every scan_id to train/val/test; without it an older ``split.csv`` (of the dataset being
        replaced with ``--force``) is removed, since it would describe other scans.
        """
        from ssnet import __version__
        from ssnet.data.contract import SPLIT_COLUMNS
        from ssnet.io import atomic_write_csv

        if not self.rows:
            raise input_error(self.out, "nothing to import: no scan was found")
        check_out(self.out, self.force)  # nobody wrote a dataset here meanwhile
        provenance.setdefault("ssnet_version", __version__)
        provenance.setdefault("n_scans", len(self.rows))
        provenance.setdefault("n_subjects", len({r["subject_id"] for r in self.rows}))
        provenance.setdefault("n_unlabeled", sum(1 for r in self.rows if not r["label"]))
        manifest = self.out / "manifest.csv"
        if manifest.exists():
            manifest.unlink()  # from here until the new manifest is written the folder is not a dataset
        for sub in ("cines", "labels"):
            (self.out / sub).mkdir(exist_ok=True)
        for r in self.rows:
            for rel in (r["cine"], r["label"]):
                if rel:
                    os.replace(self.stage / rel, self.out / rel)
        atomic_write_json(provenance, self.out / "dataset.json")
        split_path = self.out / "split.csv"
        if split is not None:
            import pandas as pd

            assert set(split) == {r["scan_id"] for r in self.rows}
            df = pd.DataFrame([{"scan_id": r["scan_id"], "subject_id": r["subject_id"], "split": split[r["scan_id"]]}
                               for r in self.rows], columns=SPLIT_COLUMNS)
            atomic_write_csv(df, split_path)
        elif split_path.exists():
            split_path.unlink()
        write_manifest(self.out, self.rows)


def split_train_val_test(scans: list[tuple[str, str, bool, bool]], where: Path, seed: int = 0,
                         train_val_ratio: tuple[float, float] = (7.0, 1.0)) -> dict[str, str]:
    """Split from folders: ``(scan_id, subject_id, in_test_folder, has_mvo)`` rows -> scan_id -> train/val/test.

    Scans from the test folder form ``test``; the others are dealt patient-wise into train and val by
    :func:`ssnet.data.split.assign_subjects` (seed ``seed``, ``train_val_ratio`` by subjects, stratified by MVO
    presence). A subject in both folders is refused (``where`` names the source).
    """
    import pandas as pd

    from ssnet.data.split import assign_subjects

    test_subjects = {subj for _, subj, test, _ in scans if test}
    crossing = sorted({subj for _, subj, test, _ in scans if not test} & test_subjects)
    if crossing:
        raise input_error(where, f"patient {crossing[0]!r} has scans in both the test and the train/val folder; "
                                 "splits must be patient-wise")
    rows = [{"subject_id": subj, "mvo": mvo} for _, subj, test, mvo in scans if not test]
    part_of: dict[str, str] = {}
    if rows:
        subjects = (pd.DataFrame(rows).groupby("subject_id", sort=True)
                    .agg(n_scans=("mvo", "size"), has_mvo=("mvo", "any")).reset_index())
        part_of = assign_subjects(subjects, (train_val_ratio[0], train_val_ratio[1], 0.0), seed)
    return {scan_id: "test" if test else part_of[subj] for scan_id, subj, test, _ in scans}
