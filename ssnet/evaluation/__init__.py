"""The one metric and statistics harness every method goes through.

* :mod:`ssnet.evaluation.metrics` — per-scan metrics, paper and strict protocols;
* :mod:`ssnet.evaluation.score` — scoring a prediction folder → long ``per_case.csv`` (``ssnet score``);
* :mod:`ssnet.evaluation.stats` — ``summary.csv``, paired tests (``stats.csv``), ranking stability;
* :mod:`ssnet.evaluation.tables` — Table 1/2/3 as CSV, Markdown, LaTeX (``ssnet tables``);
* :mod:`ssnet.evaluation.compare` — two result CSVs side by side (``ssnet compare``).
"""
from __future__ import annotations

from ssnet.evaluation.metrics import apply_strict_policy, class_metrics, evaluate_scan, image_diagonal
from ssnet.evaluation.score import PER_CASE_COLUMNS, read_per_case, score_predictions
from ssnet.evaluation.stats import holm, paired_stats, ranking_stability, summarize, wilcoxon_p
from ssnet.evaluation.tables import TableRow, write_table

__all__ = [
    "PER_CASE_COLUMNS", "TableRow", "apply_strict_policy", "class_metrics", "evaluate_scan", "holm",
    "image_diagonal", "paired_stats", "ranking_stability", "read_per_case", "score_predictions", "summarize",
    "wilcoxon_p", "write_table",
]  # fmt: skip
