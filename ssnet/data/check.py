"""``ssnet check DIR``: validate a dataset folder against the contract and list every problem."""
from __future__ import annotations

import argparse
import sys

from ssnet.data.contract import check_dataset, read_manifest, unlabeled_scan_ids
from ssnet.errors import SsnetError


def unlabeled_summary(data_dir: str) -> str | None:
    """One line saying how many scans have no label (None when all have one or the manifest is unreadable)."""
    try:
        manifest = read_manifest(data_dir)
    except SsnetError:
        return None
    missing = unlabeled_scan_ids(data_dir, manifest)
    if not missing:
        return None
    shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
    return (f"{data_dir}: {len(missing)} of {len(manifest)} scans have no label: they can be predicted, "
            f"not scored or trained on ({shown})")


def main(argv: list[str]) -> int:
    """Print every problem (one line each, naming its file); exit 1 when there are any.

    Scans without a label are not a problem: one summary line says how many there are.
    """
    parser = argparse.ArgumentParser(prog="ssnet check", description=__doc__)
    parser.add_argument("dir", help="dataset folder holding manifest.csv (and optionally split.csv)")
    args = parser.parse_args(argv)
    problems = check_dataset(args.dir)
    for problem in problems:
        print(problem)
    note = unlabeled_summary(args.dir)
    if note:
        print(note)
    if problems:
        print(f"ssnet check: {len(problems)} problem(s) in {args.dir}", file=sys.stderr)
        return 1
    print(f"{args.dir}: OK")
    return 0
