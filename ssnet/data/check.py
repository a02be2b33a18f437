"""``ssnet check DIR``: validate a dataset folder against the contract and list every problem."""
from __future__ import annotations

import argparse
import sys

from ssnet.data.contract import check_dataset


def main(argv: list[str]) -> int:
    """Print every problem (one line each, naming its file); exit 1 when there are any."""
    parser = argparse.ArgumentParser(prog="ssnet check", description=__doc__)
    parser.add_argument("dir", help="dataset folder holding manifest.csv (and optionally split.csv)")
    args = parser.parse_args(argv)
    problems = check_dataset(args.dir)
    for problem in problems:
        print(problem)
    if problems:
        print(f"ssnet check: {len(problems)} problem(s) in {args.dir}", file=sys.stderr)
        return 1
    print(f"{args.dir}: OK")
    return 0
