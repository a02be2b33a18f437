"""``ssnet`` command line: one verb per concern, each implemented in its own module.

Each verb is ``module:function`` where ``function(argv: list[str]) -> int`` parses its
own arguments. User errors (:class:`ssnet.errors.SsnetError`) print one line and exit 1;
``--debug`` (anywhere on the line) shows the traceback instead.
"""
from __future__ import annotations

import importlib
import os
import sys

VERBS: dict[str, tuple[str, str]] = {
    "phantom": ("ssnet.data.phantom", "Generate the motion-only MVO phantom dataset (the embedded default)."),
    "import": ("ssnet.data.importers", "Convert real cine data (sunnybrook, authors, acdc, dicom, tiff, nifti) into the contract."),
    "check": ("ssnet.data.check", "Validate a dataset folder against the contract."),
    "split": ("ssnet.data.split", "Write the shared subject-wise, MVO-stratified split."),
    "models": ("ssnet.engine.models_cli", "List registered models (with --params: parameter counts)."),
    "train": ("ssnet.engine.train", "Train a model with Hydra overrides; prints the run folder last."),
    "predict": ("ssnet.engine.predict", "Apply a finished run to any dataset; label maps on each scan's native grid."),
    "score": ("ssnet.evaluation.score", "Score a folder of predicted label maps against a dataset."),
    "compare": ("ssnet.evaluation.compare", "Compare two per-case (or summary) CSVs with paired statistics."),
    "tables": ("ssnet.evaluation.tables", "Write Table 1/2/3 (CSV, Markdown, LaTeX) from per-case CSVs."),
    "reproduce": ("ssnet.experiments", "Run a paper table end to end (used by reproduce.sh)."),
    "figures": ("ssnet.evaluation.figures", "Draw the paper-style figures (PNG) from a profile's runs and tables."),
}

TRAINING_VERBS = ("train", "reproduce")


def _usage() -> str:
    width = max(map(len, VERBS))
    lines = ["usage: ssnet VERB [options]   (ssnet VERB --help for each verb)", "", "verbs:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in VERBS.items()]
    lines += ["", "global option: --debug  show the full traceback on errors"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ssnet`` console script."""
    from ssnet.errors import SsnetError

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("SSNET_DEBUG") == "1"
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        print(f"ssnet: error: unknown verb {verb!r}; available: {', '.join(VERBS)}", file=sys.stderr)
        return 2
    try:
        if verb in TRAINING_VERBS:  # the code this process loads, before it loads it
            from ssnet.engine.provenance import process_snapshot

            process_snapshot()
        module = importlib.import_module(VERBS[verb][0])
        return int(module.main(rest) or 0)
    except SsnetError as exc:
        if debug:
            raise
        print(f"ssnet {verb}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"ssnet {verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
