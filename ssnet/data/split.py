"""The shared subject-wise split, stratified by MVO presence (``ssnet split DIR``).

Subjects, never scans, are assigned to train/val/test, so no subject crosses parts.
Within each stratum (subjects with / without MVO) subjects are shuffled with ``seed``
and dealt out in the requested ratios. Optionally (``scans=(443, 63, 115)``, the paper's
counts) a deterministic local search then swaps subjects of the same stratum between
parts until the scan counts are as close to the target as subject boundaries allow,
keeping the subject counts per part and stratum unchanged.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from ssnet.data.contract import SPLITS, load_label, read_manifest, scans, split_hash
from ssnet.errors import SsnetError, input_error
from ssnet.io import atomic_write_csv

PAPER_SCANS = (443, 63, 115)


def subject_table(data_dir: str | Path) -> pd.DataFrame:
    """One row per subject: ``subject_id``, ``n_scans``, ``has_mvo`` (any scan's label holds class 3).

    A scan without a label counts as MVO-negative (it cannot show MVO that nobody drew), so a dataset with
    unlabeled scans can still be split; ``ssnet check`` lists such scans.
    """
    data_dir = Path(data_dir)
    manifest = read_manifest(data_dir)
    rows = [{"subject_id": s.subject_id, "mvo": s.label is not None and bool((load_label(s) == 3).any())}
            for s in scans(data_dir, manifest)]
    df = pd.DataFrame(rows)
    return (
        df.groupby("subject_id", sort=True)
        .agg(n_scans=("mvo", "size"), has_mvo=("mvo", "any"))
        .reset_index()
    )


def _deal(n: int, ratios: tuple[float, float, float]) -> list[int]:
    """Split ``n`` items into parts proportional to ``ratios`` (largest-remainder rounding)."""
    raw = np.asarray(ratios) / sum(ratios) * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def _fill_empty_parts(part_of: dict[str, int], subjects: pd.DataFrame, ratios: tuple[float, float, float]) -> None:
    """Give every part with a positive ratio at least one subject, taken from the largest part (small cohorts)."""
    for part in range(3):
        if ratios[part] <= 0 or part in part_of.values():
            continue
        sizes = np.bincount(list(part_of.values()), minlength=3)
        donor = int(np.argmax(sizes))
        if sizes[donor] <= 1:
            continue
        # move the donor's last subject in sorted order (deterministic)
        sid = sorted(s for s, p in part_of.items() if p == donor)[-1]
        part_of[sid] = part


def assign_subjects(
    subjects: pd.DataFrame,
    ratios: tuple[float, float, float] = (0.7, 0.1, 0.2),
    seed: int = 0,
    target_scans: tuple[int, int, int] | None = None,
    iterations: int = 20000,
) -> dict[str, str]:
    """Map each subject to a split part. See the module docstring for the rule."""
    rng = np.random.default_rng(seed)
    part_of: dict[str, int] = {}
    for _, stratum in subjects.groupby("has_mvo", sort=True):
        ids = stratum["subject_id"].to_numpy()[rng.permutation(len(stratum))]
        start = 0
        for part, count in enumerate(_deal(len(ids), ratios)):
            for sid in ids[start : start + count]:
                part_of[str(sid)] = part
            start += count
    _fill_empty_parts(part_of, subjects, ratios)
    if target_scans is not None:
        n_scans = dict(zip(subjects["subject_id"].astype(str), subjects["n_scans"].astype(int)))
        stratum_of = dict(zip(subjects["subject_id"].astype(str), subjects["has_mvo"].astype(bool)))
        totals = np.zeros(3, dtype=int)
        for sid, part in part_of.items():
            totals[part] += n_scans[sid]
        target = np.asarray(target_scans)
        ids = sorted(part_of)
        cost = np.abs(totals - target).sum()
        for _ in range(iterations):
            if cost == 0:
                break
            a, b = rng.choice(len(ids), size=2, replace=False)
            sa, sb = ids[a], ids[b]
            pa, pb = part_of[sa], part_of[sb]
            if pa == pb or stratum_of[sa] != stratum_of[sb] or n_scans[sa] == n_scans[sb]:
                continue
            new = totals.copy()
            new[pa] += n_scans[sb] - n_scans[sa]
            new[pb] += n_scans[sa] - n_scans[sb]
            new_cost = np.abs(new - target).sum()
            if new_cost <= cost:
                part_of[sa], part_of[sb], totals, cost = pb, pa, new, new_cost
    return {sid: SPLITS[p] for sid, p in part_of.items()}


def make_split(
    data_dir: str | Path,
    ratios: tuple[float, float, float] = (0.7, 0.1, 0.2),
    seed: int = 0,
    target_scans: tuple[int, int, int] | None = None,
    overwrite: bool = False,
) -> tuple[pd.DataFrame, str]:
    """Write ``DIR/split.csv`` and return ``(split, content hash)``.

    An existing split.csv with different content is kept unless ``overwrite``.
    """
    data_dir = Path(data_dir)
    manifest = read_manifest(data_dir)
    subjects = subject_table(data_dir)
    if target_scans is not None and sum(target_scans) != len(manifest):
        raise input_error(
            data_dir / "manifest.csv",
            f"--scans {','.join(map(str, target_scans))} sums to {sum(target_scans)} but the dataset has {len(manifest)} scans",
        )
    part_of = assign_subjects(subjects, ratios, seed, target_scans)
    split = pd.DataFrame(
        {"scan_id": manifest["scan_id"], "subject_id": manifest["subject_id"], "split": manifest["subject_id"].map(part_of)}
    )
    path = data_dir / "split.csv"
    if path.exists() and not overwrite:
        old = pd.read_csv(path, dtype=str, keep_default_na=False)
        if old[["scan_id", "subject_id", "split"]].equals(split.astype(str).reset_index(drop=True)):
            return split, split_hash(data_dir)
        raise input_error(path, "a different split already exists; pass --force to replace it")
    atomic_write_csv(split, path)
    return split, split_hash(data_dir)


def _triple(text: str, cast: type, what: str) -> tuple:
    try:
        values = tuple(cast(v) for v in text.split(","))
    except ValueError:
        raise SsnetError(f"--{what} must be three comma-separated numbers, got {text!r}") from None
    if len(values) != 3 or any(v < 0 for v in values) or sum(values) <= 0:
        raise SsnetError(f"--{what} must be three non-negative comma-separated numbers, got {text!r}")
    return values


def main(argv: list[str]) -> int:
    """CLI: write DIR/split.csv, print the counts and the content hash."""
    parser = argparse.ArgumentParser(prog="ssnet split", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", help="dataset folder (contract: manifest.csv)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ratios", default="0.7,0.1,0.2", help="train,val,test shares of subjects (default 0.7,0.1,0.2)")
    parser.add_argument("--scans", default=None, help="target scan counts train,val,test, e.g. 443,63,115 (the paper's)")
    parser.add_argument("--force", action="store_true", help="replace an existing, different split.csv")
    args = parser.parse_args(argv)
    ratios = _triple(args.ratios, float, "ratios")
    target = _triple(args.scans, int, "scans") if args.scans else None
    split, digest = make_split(args.dir, ratios, args.seed, target, overwrite=args.force)
    counts = split.groupby("split").agg(scans=("scan_id", "size"), subjects=("subject_id", "nunique"))
    for part in SPLITS:
        if part in counts.index:
            print(f"{part}: {counts.loc[part, 'scans']} scans, {counts.loc[part, 'subjects']} subjects")
    print(f"split hash: {digest}")
    return 0
