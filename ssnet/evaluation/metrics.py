"""Per-scan segmentation metrics under the two protocols (paper and strict).

Everything here works on one 2-D scan at a time, with NumPy/SciPy only:

* edges are ``X XOR erode(X)`` with a 4-connected cross, pixels outside the image
  counting as background;
* distances come from :func:`scipy.ndimage.distance_transform_edt` with
  ``sampling = spacing`` (strict) or no spacing (paper HSD, pixels);
* both protocols share the counts, edges and distance transforms of a class, and the
  distance transforms run on the bounding box of ``P ∪ G`` (plus a one-pixel margin),
  which gives exactly the full-image values because every edge pixel lies in that box.

Paper protocol (the authors' code): Dice, Jaccard, precision, recall with their
zero-division conventions, and HSD = directed max distance pred-edge → GT-edge in pixels,
defined only when both masks are non-empty.

Strict protocol (Metrics Reloaded practice): raw DSC, IoU, precision, recall, HD, HD95
(max of the two directed linear-interpolated 95th percentiles), NSD(τ), ASSD and MASD with
NaN where undefined plus an ``empty_status``; :func:`apply_strict_policy` is the separate,
named step that replaces undefined values with worst/best cases.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from scipy import ndimage as ndi

#: 4-connected cross used for the erosion that defines edges.
CROSS = ndi.generate_binary_structure(2, 1)

PAPER_METRICS: tuple[str, ...] = ("dice", "jaccard", "precision", "recall", "hsd")
STRICT_METRICS: tuple[str, ...] = ("dsc", "iou", "precision", "recall", "hd", "hd95", "nsd", "assd", "masd")
OVERLAP_METRICS = frozenset({"dice", "jaccard", "dsc", "iou", "precision", "recall", "nsd"})
DISTANCE_METRICS = frozenset({"hsd", "hd", "hd95", "assd", "masd"})
#: Metrics where a lower value is better (distances).
LOWER_IS_BETTER = DISTANCE_METRICS
EMPTY_STATUSES: tuple[str, ...] = ("both", "miss", "fp", "empty")
PROTOCOLS: tuple[str, ...] = ("paper", "strict")


def higher_is_better(metric: str) -> bool:
    """True for overlap-type metrics, False for distances (``hsd``, ``hd``, ``hd95``, ``assd``, ``masd``)."""
    return metric not in LOWER_IS_BETTER


def edge(mask: np.ndarray) -> np.ndarray:
    """Edge of a boolean mask: ``mask XOR erode(mask)`` (4-connected cross, outside = background)."""
    mask = np.asarray(mask, dtype=bool)
    return mask & ~ndi.binary_erosion(mask, structure=CROSS, border_value=0)


def empty_status(n_pred: int, n_gt: int) -> str:
    """``both`` (G≠∅, P≠∅), ``miss`` (G≠∅, P=∅), ``fp`` (G=∅, P≠∅) or ``empty`` (both empty)."""
    if n_gt > 0:
        return "both" if n_pred > 0 else "miss"
    return "fp" if n_pred > 0 else "empty"


def image_diagonal(shape: Sequence[int], spacing: Sequence[float] | None = None) -> float:
    """Image diagonal ``sqrt((H·s_r)² + (W·s_c)²)``: the worst-case distance of the strict policy."""
    sr, sc = (1.0, 1.0) if spacing is None else (float(spacing[0]), float(spacing[1]))
    return math.hypot(shape[0] * sr, shape[1] * sc)


def directed_distances(src_edge: np.ndarray, dst_edge: np.ndarray, spacing: Sequence[float] | None = None) -> np.ndarray:
    """Distance from every pixel of ``src_edge`` to the nearest pixel of ``dst_edge``.

    Args:
        src_edge, dst_edge: boolean edge maps of one shape; ``dst_edge`` must be non-empty.
        spacing: (row, col) pixel size; None means pixels.

    Returns:
        1-D float array, one distance per ``src_edge`` pixel (row-major order).
    """
    edt = ndi.distance_transform_edt(~dst_edge, sampling=None if spacing is None else tuple(spacing))
    return edt[src_edge]


def _safe_div(num: float, den: float, zero: float) -> float:
    return num / den if den > 0 else zero


def _bbox(mask: np.ndarray, margin: int = 1) -> tuple[slice, slice]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    return (
        slice(max(int(rows[0]) - margin, 0), min(int(rows[-1]) + 1 + margin, h)),
        slice(max(int(cols[0]) - margin, 0), min(int(cols[-1]) + 1 + margin, w)),
    )


def class_metrics(
    pred: np.ndarray,
    gt: np.ndarray,
    *,
    spacing: Sequence[float] | None = None,
    tau: float = 1.0,
    protocols: Iterable[str] = PROTOCOLS,
) -> dict[str, dict[str, float] | str | int]:
    """All metrics of one binary mask pair, both protocols from shared counts/edges/EDTs.

    Args:
        pred, gt: boolean masks (H, W) of the prediction P and ground truth G.
        spacing: (row, col) pixel size in mm for strict distances; None means pixels.
        tau: NSD tolerance in the distance unit.
        protocols: subset of ``("paper", "strict")``.

    Returns:
        ``{"n_pred", "n_gt", "empty_status", "paper": {metric: value}, "strict": {metric: raw}}``.
        Paper values follow the authors' conventions (``hsd`` NaN unless both non-empty);
        strict values are *raw* (NaN where undefined; apply :func:`apply_strict_policy`).
    """
    protocols = tuple(protocols)
    pred = np.asarray(pred, dtype=bool)
    gt = np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"pred and gt must be 2-D masks of one shape, got {pred.shape} and {gt.shape}")
    n_pred, n_gt = int(pred.sum()), int(gt.sum())
    tp = int(np.count_nonzero(pred & gt))
    fp, fn = n_pred - tp, n_gt - tp
    status = empty_status(n_pred, n_gt)
    out: dict[str, dict[str, float] | str | int] = {"n_pred": n_pred, "n_gt": n_gt, "empty_status": status}

    d_pg = d_gp = None
    hsd = math.nan
    if status == "both":
        box = _bbox(pred | gt)
        p, g = pred[box], gt[box]
        ep, eg = edge(p), edge(g)
        strict_sp = (1.0, 1.0) if spacing is None else (float(spacing[0]), float(spacing[1]))
        isotropic_unit = strict_sp == (1.0, 1.0)
        if "strict" in protocols:
            edt_g = ndi.distance_transform_edt(~eg, sampling=None if isotropic_unit else strict_sp)
            d_pg = edt_g[ep]
            d_gp = ndi.distance_transform_edt(~ep, sampling=None if isotropic_unit else strict_sp)[eg]
            if isotropic_unit:
                hsd = float(d_pg.max())
        if "paper" in protocols and math.isnan(hsd):
            hsd = float(ndi.distance_transform_edt(~eg)[ep].max())

    if "paper" in protocols:
        out["paper"] = {
            "dice": _safe_div(2 * tp, 2 * tp + fp + fn, 1.0),
            "jaccard": _safe_div(tp, tp + fp + fn, 1.0),
            "precision": _safe_div(tp, tp + fp, 1.0),
            "recall": _safe_div(tp, tp + fn, 1.0),
            "hsd": hsd,
        }
    if "strict" in protocols:
        nan = math.nan
        raw = {
            "dsc": _safe_div(2 * tp, 2 * tp + fp + fn, nan),
            "iou": _safe_div(tp, tp + fp + fn, nan),
            "precision": _safe_div(tp, tp + fp, nan),
            "recall": _safe_div(tp, tp + fn, nan),
            "hd": nan,
            "hd95": nan,
            "nsd": nan,
            "assd": nan,
            "masd": nan,
        }
        if d_pg is not None and d_gp is not None:
            n_p, n_g = d_pg.size, d_gp.size
            raw["hd"] = float(max(d_pg.max(), d_gp.max()))
            raw["hd95"] = float(max(np.percentile(d_pg, 95), np.percentile(d_gp, 95)))
            raw["nsd"] = float((np.count_nonzero(d_pg <= tau) + np.count_nonzero(d_gp <= tau)) / (n_p + n_g))
            raw["assd"] = float((d_pg.sum() + d_gp.sum()) / (n_p + n_g))
            raw["masd"] = float(0.5 * (d_pg.mean() + d_gp.mean()))
        out["strict"] = raw
    return out


def strict_policy_value(metric: str, raw: float, status: str, diagonal: float) -> float:
    """The strict empty-mask policy for one value (see :func:`apply_strict_policy`)."""
    if status == "both":
        return float(raw)
    if status == "empty":
        return 0.0 if metric in DISTANCE_METRICS else 1.0
    if status in ("miss", "fp"):
        return float(diagonal) if metric in DISTANCE_METRICS else 0.0
    raise ValueError(f"unknown empty_status {status!r}")


def apply_strict_policy(
    metrics: np.ndarray | Sequence[str],
    raw: np.ndarray | Sequence[float],
    status: np.ndarray | Sequence[str],
    diagonal: np.ndarray | Sequence[float] | float,
) -> np.ndarray:
    """The named aggregation step of the strict protocol, vectorised over rows.

    ``both``: the formula (a defined 0 stays 0); ``miss``/``fp``: 0 for overlap metrics and
    NSD, the image diagonal for distances; ``empty``: 1 for overlap/NSD, 0 for distances.

    Args:
        metrics: metric name per row; raw: raw value per row (NaN where undefined);
        status: empty_status per row; diagonal: image diagonal per row (or one value).

    Returns:
        float array of policy values, with no NaN.
    """
    metrics = np.asarray(metrics, dtype=object)
    raw = np.asarray(raw, dtype=float)
    status = np.asarray(status, dtype=object)
    diagonal = np.broadcast_to(np.asarray(diagonal, dtype=float), raw.shape)
    is_dist = np.isin(metrics, list(DISTANCE_METRICS))
    bad = ~np.isin(status, list(EMPTY_STATUSES))
    if bad.any():
        raise ValueError(f"unknown empty_status {status[bad][0]!r}")
    worst = np.where(is_dist, diagonal, 0.0)
    best = np.where(is_dist, 0.0, 1.0)
    out = np.where(status == "both", raw, np.where(status == "empty", best, worst))
    if np.isnan(out).any():
        i = int(np.flatnonzero(np.isnan(out))[0])
        raise ValueError(f"metric {metrics[i]!r} is NaN for a scan with status 'both'")
    return out


def paper_aggregate(values: np.ndarray | Sequence[float], metric: str) -> tuple[float, int]:
    """Aggregate per-scan paper values: plain mean over all scans; HSD over defined scans (1.0 if none).

    Returns:
        ``(mean, n_used)``; for HSD ``n_used`` is ``n_hsd``.
    """
    v = np.asarray(values, dtype=float)
    if metric == "hsd":
        v = v[~np.isnan(v)]
        return (float(v.mean()) if v.size else 1.0), int(v.size)
    if np.isnan(v).any():
        raise ValueError(f"paper metric {metric!r} has NaN per-scan values")
    return (float(v.mean()) if v.size else math.nan), int(v.size)


def strict_aggregate(values: np.ndarray | Sequence[float], status: Sequence[str]) -> dict[str, float]:
    """Aggregate per-scan strict *policy* values of one metric.

    Returns:
        ``mean``, ``median``, ``q25``, ``q75`` over all scans, ``mean_pos`` over scans with G≠∅,
        status counts ``n_both``/``n_miss``/``n_fp``/``n_empty``, and scan-level detection
        ``det_sensitivity`` = #P≠∅ among G≠∅ / #G≠∅, ``det_specificity`` = #P=∅ among G=∅ / #G=∅.
    """
    v = np.asarray(values, dtype=float)
    s = np.asarray(status, dtype=object)
    if np.isnan(v).any():
        raise ValueError("strict policy values must not contain NaN (apply the policy first)")
    counts = {f"n_{k}": int(np.count_nonzero(s == k)) for k in EMPTY_STATUSES}
    pos = np.isin(s, ["both", "miss"])
    n_pos, n_neg = counts["n_both"] + counts["n_miss"], counts["n_fp"] + counts["n_empty"]
    q25, med, q75 = (np.percentile(v, [25, 50, 75]) if v.size else (math.nan,) * 3)
    return {
        "mean": float(v.mean()) if v.size else math.nan,
        "median": float(med),
        "q25": float(q25),
        "q75": float(q75),
        "mean_pos": float(v[pos].mean()) if pos.any() else math.nan,
        **counts,
        "det_sensitivity": counts["n_both"] / n_pos if n_pos else math.nan,
        "det_specificity": counts["n_empty"] / n_neg if n_neg else math.nan,
    }


def evaluate_scan(
    pred: np.ndarray,
    gt: np.ndarray,
    *,
    classes: Sequence[int] = (1, 2, 3),
    spacing: Sequence[float] | None = None,
    tau: float = 1.0,
    protocols: Iterable[str] = PROTOCOLS,
) -> list[dict]:
    """Evaluate one pair of label maps (values 0..3) for each class.

    Args:
        pred, gt: integer label maps (H, W) on the same grid.
        classes: class ids to evaluate (3 = MVO, the headline).
        spacing: (row, col) mm for strict distances; None means pixels.
        tau: NSD tolerance in the distance unit.
        protocols: subset of ``("paper", "strict")``.

    Returns:
        One dict per class and metric with keys ``class_id, protocol, metric, value,
        raw_value, empty_status, n_gt, n_pred`` (strict ``value`` after the policy).
    """
    protocols = tuple(protocols)
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    diag = image_diagonal(gt.shape, spacing)
    rows: list[dict] = []
    for c in classes:
        res = class_metrics(pred == c, gt == c, spacing=spacing, tau=tau, protocols=protocols)
        status = res["empty_status"]
        base = {"class_id": int(c), "empty_status": status, "n_gt": res["n_gt"], "n_pred": res["n_pred"]}
        if "paper" in protocols:
            for m, v in res["paper"].items():  # type: ignore[union-attr]
                rows.append({**base, "protocol": "paper", "metric": m, "value": v, "raw_value": v})
        if "strict" in protocols:
            for m, v in res["strict"].items():  # type: ignore[union-attr]
                val = strict_policy_value(m, v, status, diag)  # type: ignore[arg-type]
                rows.append({**base, "protocol": "strict", "metric": m, "value": val, "raw_value": v})
    return rows
