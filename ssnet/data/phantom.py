"""The motion-only MVO phantom: the suite's embedded default dataset.

The paper's cohort (621 cine scans from 125 subjects) is private, so the default
dataset is a synthetic short-axis cine CMR phantom in which microvascular
obstruction (MVO) is visible **only through wall motion, never through contrast**:
infarct and MVO pixels follow exactly the same intensity distribution as healthy
myocardium in every frame (at the default ``contrast=0``). This is the paper's
premise: on contrast-free cine, MVO shows only as abnormal (akinetic or dyskinetic)
motion of the subendocardial infarct core.

Usage::

    ssnet phantom --out data/phantom                       # 125 subjects -> 621 scans, 224x224x30
    ssnet phantom --out data/phantom --preview phantom.png # also render a preview
    ssnet phantom --preview phantom.png --difficulty easy  # preview only, generated in memory

    from ssnet.data.phantom import generate_phantom, plan_cohort
    generate_phantom("data/phantom", subjects=125, seed=0)

Output (the dataset contract of :mod:`ssnet.data.contract`)::

    DIR/manifest.csv             scan_id, subject_id, cine, label, spacing_row, spacing_col
    DIR/cines/S0001_sl01.nii.gz  uint8 (H, W, T); frame 0 = end-diastole
    DIR/labels/S0001_sl01.nii.gz uint8 (H, W): 0 background, 1 LV myocardium, 2 infarct, 3 MVO
    DIR/dataset.json             generator, all arguments, preset values, per-subject traits,
                                 per-scan traits (has_infarct, has_mvo, pixel counts, ...)

No ``split.csv`` is written (``ssnet split`` does that, stratified by MVO presence).
Scan ids are ``S{subject:04d}_sl{slice:02d}``, slices numbered 1 (base) .. n (apex).

Arguments (``generate_phantom`` keyword / CLI flag; default)
-------------------------------------------------------------
- ``subjects`` / ``--subjects`` (125): number of subjects. Each has 3-7 short-axis
  slices base->apex; the counts are drawn, then adjusted deterministically so the total
  is ``round(subjects * 621 / 125)`` -- exactly 621 scans for the default 125 subjects,
  like the paper's cohort. Exactly ``round(subjects / 2)`` subjects (at least one) have MVO.
- ``size`` / ``--size`` (224): image size in pixels. The field of view is fixed at
  ``FOV_MM`` = 360 mm, so the pixel spacing is 360/size mm (1.61 mm at 224) and the
  anatomy scales with ``size``. At 224 the LV lies near the image centre and the whole
  heart (LV, RV, lesions) lies inside the central 96x96 pixels (the quick training
  profile's centre crop).
- ``frames`` / ``--frames`` (30): frames over one cardiac cycle; frame 0 is
  end-diastole (ED), end-systole (ES) falls at 35-40 % of the cycle.
- ``seed`` / ``--seed`` (0): every scan is seeded from (seed, subject, slice), so the
  output is byte-identical for identical arguments and independent of ``workers``.
- ``difficulty`` / ``--difficulty`` (``paper``): preset for MVO size, hypokinesia
  severity and noise; see ``PRESETS`` and the table below. The cohort structure
  (slice counts, which subjects/slices have infarct or MVO, territories) does not depend
  on the difficulty; only the magnitudes do.
- ``contrast`` / ``--contrast`` (0.0): relative intensity offset of lesion tissue, for
  experiments only. Infarct myocardium is scaled by ``1 + contrast`` (oedema-like),
  the MVO core by ``1 - contrast`` (haemorrhage-like). ``|contrast| <= 0.5``.
  At 0 the lesion is invisible in every single frame.
- ``workers`` / ``--workers`` (min(2, CPU count)): processes rendering scans in parallel.
- ``healthy_lesion_motion`` / ``--healthy-lesion-motion`` (False): give infarct and
  MVO healthy motion (labels unchanged): a control in which the lesion is invisible.
- ``--preview PNG``: render ED / mid-systole / ES frames of a few scans (MVO-positive
  first) with label outlines (myocardium, infarct, MVO). With ``--out`` it reads the
  dataset folder (any dataset in the contract; with no generator flags given, an existing
  dataset is only read, otherwise it is generated first if needed); without ``--out`` it
  renders a small cohort in memory.
- ``--force``: allow writing into a folder that holds a different dataset (or other
  files). Without it such a folder is refused; regenerating with identical arguments
  into the same folder is a no-op (dataset.json is compared).

Model
-----
Anatomy (bSSFP-like, signal relative to blood = 1): bright LV/RV blood pools (~1.0),
LV myocardium (~0.3, per-scan jitter), thin RV free wall, two papillary muscles in mid
slices, pericardial and subcutaneous fat (~0.8), chest-wall muscle, mediastinum, dark
lungs, descending aorta, spine; soft tissue edges of 1.4 pixel width (partial volume),
a smooth multiplicative bias field (linear + quadratic terms, each up to +-8 % at the
FOV edge, a few % across the heart), a
small blood-signal modulation over the cycle, then Rician noise (magnitude of complex
Gaussian noise) at a per-scan SNR (blood signal / noise sigma), stored as uint8 with
blood ~ 200.

Subject traits (shared by its slices): LV end-diastolic endocardial radius (22-28 mm
at mid-ventricle, 0.63-1.08x from base to apex), wall thickness (8-11 mm), healthy
radial endocardial shortening (30-40 %), through-plane (long-axis) myocardial area
gain at ES (10-16 %), ES timing (35-40 % of the cycle), twist (-3 deg base .. +6 deg
apex), in-plane translation drift (0.5-2.5 mm), RV size, body size, heart orientation
and infarct territory: anterior/septal (LAD, 45 %), inferior (RCA, 35 %), lateral
(LCx, 20 %), with the infarct's longitudinal position following the territory.

Motion: a polar, angular-sector model around the LV centre. The endocardial radius
contracts as ``R_endo(theta, t) = R_endo0(theta) * (1 - c(theta) * s(t))`` where
``s(t)`` is the contraction phase (0 at ED, 1 at ES; cosine systole, rapid early
filling, diastasis, atrial kick). The myocardial area of each angular sector is
conserved up to the long-axis gain ``1 + lambda(theta) * s(t)``, so the wall thickens
as it contracts (healthy thickening ~35-60 %). The cavity scales radially; tissue
outside the epicardium follows with an area-preserving displacement that fades out
over 20 mm; a small twist and translation fade out between 40 and 65 mm from the LV centre. Each frame is
rendered by mapping every pixel back to its end-diastolic position (inverse warp,
vectorised). ``c`` and ``lambda`` are ``kinesis(theta)`` times their healthy values:
kinesis is 1 in healthy segments, the infarct's value (hypokinetic) in the infarct
sector, and the MVO's value (akinetic ~0 or dyskinetic < 0) in the MVO sector, with
cosine transitions (15 deg for infarct, up to 10 deg for MVO).

Labels are drawn at frame 0 (ED, where LGE would be acquired): myocardium between
endo- and epicardium (papillary muscles excluded); infarct = an angular sector,
subendocardial to transmural (transmurality tapers towards its edges); MVO = a
subendocardial semi-elliptical core inside the infarct (nested, each pixel holds its
innermost class). Only slices crossing the infarct core carry MVO: within an MVO
subject a contiguous block of 30-60 % of its slices (about 22 % of all scans with the
defaults); infarct covers that block plus up to one slice on each side (MVO-free
subjects: 30-70 % of their slices).

Difficulty presets (drawn uniformly in the ranges; ``*_kinesis`` = contraction relative
to healthy, 1 = normal, 0 = akinetic, < 0 = dyskinetic). MVO / infarct area = share of
the myocardium of a positive slice, median (p10-p90) over the default cohort at 224:

=======  ==============  ============  ==============  ===============  =====  ===================  ==================
preset   MVO half-width  MVO depth     MVO kinesis     infarct kinesis  SNR    MVO area             infarct area
=======  ==============  ============  ==============  ===============  =====  ===================  ==================
easy     30-45 deg       65-90 % wall  -0.20 .. -0.08  0.45-0.70        25-40  8.8 % (6.0-12.2)     19 % (9-31)
paper    12-22 deg       30-55 % wall  -0.05 .. +0.03  0.30-0.60        14-26  2.4 % (1.6-3.5)      15 % (7-25)
hard     6-12 deg        25-40 % wall   0.00 .. +0.10  0.15-0.40         8-15  1.0 % (0.6-1.4)      13 % (6-23)
=======  ==============  ============  ==============  ===============  =====  ===================  ==================

MVO pixels per positive scan at 224 (median, p10-p90): easy 55 (35-77), paper 15
(10-23), hard 6 (4-9); the myocardium has ~585 pixels (1.61 mm spacing).

``easy``: a big, clearly dyskinetic MVO core inside a mildly hypokinetic infarct, low
noise (learnable within a short CPU budget). ``paper``: a realistic small akinetic core
(about 1-4 % of the slice's myocardium) inside a hypokinetic infarct. ``hard``: a tiny
core inside a severely hypokinetic infarct (little motion contrast between the two),
high noise. Infarct half-width: easy 55-85, paper 40-70, hard 35-65 deg; transmurality
50-100 % at its centre, tapering to 35 % of that at its angular edges. Slices at the
infarct's longitudinal edges get 60-85 % of its width and depth; MVO slices away from the
core slice 60-95 % of the MVO width. The MVO half-width is capped at the infarct's minus 10 deg (nested sectors).
"""
from __future__ import annotations

import argparse
import io
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ssnet.errors import SsnetError, input_error

PHANTOM_VERSION = 1
FOV_MM = 360.0
PAPER_SUBJECTS, PAPER_SCANS = 125, 621
MVO_SUBJECT_FRACTION = 0.5
N_ANGLES = 1440  # angular lookup resolution (0.25 deg)
TWO_PI = 2.0 * math.pi

PRESETS: dict[str, dict[str, tuple[float, float]]] = {
    "easy": dict(
        infarct_half_deg=(55, 85), infarct_transmural=(0.5, 1.0), infarct_kinesis=(0.45, 0.70),
        mvo_half_deg=(30, 45), mvo_transmural=(0.65, 0.9), mvo_kinesis=(-0.20, -0.08), snr=(25, 40)),
    "paper": dict(
        infarct_half_deg=(40, 70), infarct_transmural=(0.5, 1.0), infarct_kinesis=(0.30, 0.60),
        mvo_half_deg=(12, 22), mvo_transmural=(0.3, 0.55), mvo_kinesis=(-0.05, 0.03), snr=(14, 26)),
    "hard": dict(
        infarct_half_deg=(35, 65), infarct_transmural=(0.5, 1.0), infarct_kinesis=(0.15, 0.40),
        mvo_half_deg=(6, 12), mvo_transmural=(0.25, 0.4), mvo_kinesis=(0.0, 0.10), snr=(8, 15)),
}
DIFFICULTIES = tuple(PRESETS)
TERRITORIES = {  # name: (centre angle in image coordinates [deg, 0 = right, 90 = down], probability, longitudinal position)
    "anteroseptal": (235.0, 0.45, 0.65),
    "inferior": (110.0, 0.35, 0.35),
    "lateral": (20.0, 0.20, 0.50),
}


# --------------------------------------------------------------------------- planning


@dataclass
class SlicePlan:
    """Everything random about one scan except its noise field (cheap to compute)."""

    slice_index: int  # 1 = base
    z: float  # 0 = base .. 1 = apex
    has_infarct: bool
    has_mvo: bool
    infarct_half_deg: float
    infarct_transmural: float
    mvo_half_deg: float
    mvo_transmural: float
    mvo_offset_deg: float
    snr: float
    gain: float
    blood: float
    myocardium: float
    fat: float
    bias: tuple[float, float, float, float]
    blood_phase: float
    twist_deg: float
    drift_mm: tuple[float, float]


@dataclass
class SubjectPlan:
    """Subject traits shared by its slices, plus the slices."""

    subject_id: str
    index: int
    has_mvo: bool
    territory: str
    infarct_angle_deg: float
    lv_radius_mm: float
    wall_mm: float
    contractility: float
    long_axis_gain: float
    t_es: float
    infarct_kinesis: float
    mvo_kinesis: float
    orientation_deg: float
    lv_offset_mm: tuple[float, float]
    rv_scale: float
    body_scale: float
    shape: tuple[float, ...]
    slices: list[SlicePlan] = field(default_factory=list)


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def _lerp(rng_value: float, bounds: tuple[float, float]) -> float:
    lo, hi = bounds
    return float(lo + rng_value * (hi - lo))


def slice_counts(subjects: int, seed: int) -> list[int]:
    """Per-subject slice counts in 3..7 summing to round(subjects * 621 / 125)."""
    rng = _rng(seed, 0x51C)
    counts = rng.choice([3, 4, 5, 6, 7], size=subjects, p=[0.10, 0.22, 0.33, 0.22, 0.13]).astype(int)
    target = int(min(7 * subjects, max(3 * subjects, round(subjects * PAPER_SCANS / PAPER_SUBJECTS))))
    while counts.sum() != target:
        step = 1 if counts.sum() < target else -1
        movable = np.flatnonzero(counts < 7) if step > 0 else np.flatnonzero(counts > 3)
        counts[movable[rng.integers(len(movable))]] += step
    return [int(c) for c in counts]


def plan_cohort(subjects: int = PAPER_SUBJECTS, seed: int = 0, difficulty: str = "paper") -> list[SubjectPlan]:
    """Plan the cohort (subjects, slices, lesions, per-scan parameters) without rendering anything."""
    if difficulty not in PRESETS:
        raise SsnetError(f"unknown difficulty {difficulty!r}; choose one of {', '.join(DIFFICULTIES)}")
    if subjects < 1:
        raise SsnetError(f"subjects must be >= 1, got {subjects}")
    preset = PRESETS[difficulty]
    counts = slice_counts(subjects, seed)
    n_mvo = max(1, int(subjects * MVO_SUBJECT_FRACTION + 0.5))
    mvo_subjects = set(_rng(seed, 0x3B0).permutation(subjects)[:n_mvo].tolist())
    names = list(TERRITORIES)
    probs = np.array([TERRITORIES[t][1] for t in names])
    plan = []
    for i, n in enumerate(counts):
        rng = _rng(seed, 0x5B7, i)
        u = rng.random(32)  # subject-level uniforms, used in a fixed order
        territory = names[int(np.searchsorted(np.cumsum(probs), u[0] * probs.sum(), side="right").clip(0, len(names) - 1))]
        angle0, _, zpref = TERRITORIES[territory]
        orientation = _lerp(u[1], (-10, 10))
        subj = SubjectPlan(
            subject_id=f"S{i + 1:04d}", index=i, has_mvo=i in mvo_subjects, territory=territory,
            infarct_angle_deg=float((angle0 + orientation + _lerp(u[2], (-15, 15))) % 360.0),
            lv_radius_mm=_lerp(u[3], (22, 28)), wall_mm=_lerp(u[4], (8, 11)),
            contractility=_lerp(u[5], (0.30, 0.40)), long_axis_gain=_lerp(u[6], (0.10, 0.16)),
            t_es=_lerp(u[7], (0.35, 0.40)),
            infarct_kinesis=_lerp(u[8], preset["infarct_kinesis"]),
            mvo_kinesis=_lerp(u[9], preset["mvo_kinesis"]),
            orientation_deg=orientation,
            lv_offset_mm=(_lerp(u[10], (3, 9)), _lerp(u[11], (0, 6))),  # (x right, y down)
            rv_scale=_lerp(u[12], (0.85, 1.15)), body_scale=_lerp(u[13], (0.9, 1.1)),
            shape=tuple(float(v) for v in u[14:20] * TWO_PI),
        )
        infarct_half = _lerp(u[20], preset["infarct_half_deg"])
        infarct_tm = _lerp(u[21], preset["infarct_transmural"])
        mvo_half = _lerp(u[22], preset["mvo_half_deg"])
        mvo_tm = min(_lerp(u[23], preset["mvo_transmural"]), 0.9 * infarct_tm)
        drift_dir, drift_mag = u[24] * TWO_PI, _lerp(u[25], (0.5, 2.5))
        # longitudinal extent: core slice, MVO block, infarct block
        core = int(np.clip(round(zpref * (n - 1) + rng.normal(0, 0.5)), 0, n - 1))
        if subj.has_mvo:
            m = int(np.clip(round(n * _lerp(u[26], (0.3, 0.6))), 1, n))
            lo = int(np.clip(core - m // 2, 0, n - m))
            mvo_block = set(range(lo, lo + m))
            inf_lo = max(0, lo - int(u[27] < 0.6))
            inf_hi = min(n, lo + m + int(u[28] < 0.6))
        else:
            mvo_block = set()
            m = int(np.clip(round(n * _lerp(u[26], (0.3, 0.7))), 1, n))
            inf_lo = int(np.clip(core - m // 2, 0, n - m))
            inf_hi = inf_lo + m
        z0, z1 = _lerp(u[29], (0.05, 0.15)), _lerp(u[30], (0.75, 0.9))
        zs = np.linspace(z0, z1, n)
        for k in range(n):
            v = rng.random(24)
            has_inf = inf_lo <= k < inf_hi
            has_mvo = k in mvo_block
            central = has_mvo or k == core
            edge = 1.0 if central else _lerp(v[0], (0.6, 0.85))
            mvo_factor = 1.0 if k == core else _lerp(v[1], (0.6, 0.95))
            inf_half = infarct_half * edge
            m_half = min(mvo_half * mvo_factor, inf_half - 10.0) if has_mvo else 0.0
            if has_mvo and m_half < 3.0:
                m_half = 3.0
                inf_half = max(inf_half, 13.0)
            slack = max(0.0, inf_half - m_half - 10.0)
            subj.slices.append(SlicePlan(
                slice_index=k + 1, z=float(zs[k]), has_infarct=bool(has_inf), has_mvo=bool(has_mvo),
                infarct_half_deg=float(inf_half) if has_inf else 0.0,
                infarct_transmural=float(infarct_tm * edge) if has_inf else 0.0,
                mvo_half_deg=float(m_half), mvo_transmural=float(mvo_tm) if has_mvo else 0.0,
                mvo_offset_deg=_lerp(v[2], (-slack, slack)) * 0.5 if has_mvo else 0.0,
                snr=_lerp(v[3], preset["snr"]), gain=_lerp(v[4], (0.85, 1.05)),
                blood=_lerp(v[5], (0.92, 1.0)), myocardium=_lerp(v[6], (0.26, 0.34)), fat=_lerp(v[7], (0.75, 0.9)),
                bias=tuple(_lerp(x, (-0.08, 0.08)) for x in v[8:12]),
                blood_phase=float(v[12] * TWO_PI),
                twist_deg=float(-3.0 + 9.0 * zs[k] + _lerp(v[13], (-1, 1))),
                drift_mm=(float(drift_mag * math.cos(drift_dir) + _lerp(v[14], (-0.3, 0.3))),
                          float(drift_mag * math.sin(drift_dir) + _lerp(v[15], (-0.3, 0.3)))),
            ))
        plan.append(subj)
    return plan


# --------------------------------------------------------------------------- geometry and motion


def contraction_phase(t: np.ndarray, t_es: float) -> np.ndarray:
    """Contraction phase s(t) in [0, 1] for cycle fraction t in [0, 1): 0 at ED (t=0), 1 at ES (t=t_es).

    Cosine systole; diastole = rapid early filling (75 % in the first 35 %), diastasis, atrial kick (last 25 %).
    """
    t = np.asarray(t, dtype=np.float64) % 1.0
    sys = 0.5 * (1.0 - np.cos(np.pi * np.clip(t / t_es, 0.0, 1.0)))
    u = np.clip((t - t_es) / (1.0 - t_es), 0.0, 1.0)

    def smooth(x):
        x = np.clip(x, 0.0, 1.0)
        return 0.5 * (1.0 - np.cos(np.pi * x))

    dia = 1.0 - 0.75 * smooth(u / 0.35) - 0.25 * smooth((u - 0.75) / 0.25)
    return np.where(t <= t_es, sys, dia)


def _window(delta: np.ndarray, half: float, taper: float) -> np.ndarray:
    """1 for |delta| <= half - taper/2, 0 beyond half + taper/2, cosine in between (radians)."""
    if half <= 0:
        return np.zeros_like(delta)
    taper = max(taper, 1e-6)
    x = np.clip((np.abs(delta) - (half - taper / 2)) / taper, 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * x))


def _taper(x: np.ndarray, start: float, stop: float) -> np.ndarray:
    """1 below ``start``, 0 beyond ``stop``, cosine in between."""
    u = np.clip((x - start) / (stop - start), 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * u))


def _angdiff(a: np.ndarray, b: float) -> np.ndarray:
    return (a - b + np.pi) % TWO_PI - np.pi


def _soft_inside(d: np.ndarray, eps: float) -> np.ndarray:
    """Partial-volume fraction of a pixel at signed distance ``d`` (negative inside) from an edge."""
    return np.clip(0.5 - d / eps, 0.0, 1.0)


class PhantomScan:
    """Geometry, motion, labels and rendering of one scan (deterministic given its plan)."""

    def __init__(self, subject: SubjectPlan, sl: SlicePlan, *, size: int = 224, frames: int = 30,
                 contrast: float = 0.0, healthy_lesion_motion: bool = False, seed: int = 0):
        self.subject, self.slice, self.size, self.frames = subject, sl, int(size), int(frames)
        self.contrast, self.healthy_lesion_motion, self.seed = float(contrast), bool(healthy_lesion_motion), int(seed)
        self.spacing = FOV_MM / self.size
        self.eps = 1.4 * self.spacing  # partial-volume edge width (mm)
        z = sl.z
        # LV centre in mm from the image centre (x right, y down)
        self.centre = np.array(subject.lv_offset_mm, dtype=np.float64)
        a = np.arange(N_ANGLES) * (TWO_PI / N_ANGLES)
        self.angles = a
        sh = subject.shape
        r_endo = subject.lv_radius_mm * (1.08 - 0.55 * z * z)
        self.endo0 = r_endo * (1.0 + 0.03 * np.cos(2 * (a - sh[0])) + 0.015 * np.cos(3 * (a - sh[1])))
        wall = subject.wall_mm * (1.0 - 0.15 * z) * (1.0 + 0.06 * np.cos(a - sh[2]))
        self.epi0 = self.endo0 + wall
        self.area0 = self.epi0**2 - self.endo0**2
        # lesion sectors
        inf_c = math.radians(subject.infarct_angle_deg)
        mvo_c = inf_c + math.radians(sl.mvo_offset_deg)
        inf_h, mvo_h = math.radians(sl.infarct_half_deg), math.radians(sl.mvo_half_deg)
        self.infarct_centre, self.mvo_centre = inf_c, mvo_c
        d_inf, d_mvo = _angdiff(a, inf_c), _angdiff(a, mvo_c)
        # label depth (fraction of the wall from the endocardium)
        x = np.clip(1.0 - (d_inf / max(inf_h, 1e-9)) ** 2, 0.0, None)
        self.infarct_depth = np.zeros_like(a)
        if sl.has_infarct:
            self.infarct_depth = np.where(np.abs(d_inf) < inf_h, sl.infarct_transmural * (0.35 + 0.65 * np.sqrt(x)), 0.0)
        y = np.clip(1.0 - (d_mvo / max(mvo_h, 1e-9)) ** 2, 0.0, None)
        self.mvo_depth = np.where(np.abs(d_mvo) < mvo_h, sl.mvo_transmural * np.sqrt(y), 0.0) if sl.has_mvo else np.zeros_like(a)
        self.mvo_depth = np.minimum(self.mvo_depth, self.infarct_depth)
        # kinesis (contraction relative to healthy) per angle
        kin = np.ones_like(a)
        if not self.healthy_lesion_motion:
            if sl.has_infarct:
                g = _window(d_inf, inf_h, math.radians(15.0))
                kin = 1.0 - (1.0 - subject.infarct_kinesis) * g
            if sl.has_mvo:
                g = _window(d_mvo, mvo_h, min(math.radians(10.0), mvo_h))
                kin = kin * (1.0 - g) + subject.mvo_kinesis * g
        self.kinesis = kin
        healthy_c = subject.contractility * (1.0 + 0.08 * np.cos(a - sh[3]))
        self.c = healthy_c * kin
        self.lam = subject.long_axis_gain * kin
        # float32 copies for the per-frame warp
        self._f32 = {k: getattr(self, k).astype(np.float32) for k in ("endo0", "epi0", "area0", "c", "lam")}
        # papillary muscles (mid slices), in reference coordinates relative to the LV centre
        self.papillary = []
        if 0.2 < z < 0.8:
            for ang in (-45.0 + subject.orientation_deg, 115.0 + subject.orientation_deg):
                th = math.radians(ang)
                idx = int(round(th % TWO_PI / TWO_PI * N_ANGLES)) % N_ANGLES
                rp = 0.15 * r_endo
                rr = self.endo0[idx] - 0.8 * rp
                self.papillary.append((rr * math.cos(th), rr * math.sin(th), rp))
        # RV: ellipse beside the septum, rotated with the heart orientation
        rv_th = math.radians(180.0 + subject.orientation_deg)
        f = subject.rv_scale * (1.0 - 0.5 * z)
        sep = float(np.max(self.epi0))
        outer, inner = sep + 16.0 * f, 0.35 * sep  # RV cavity extent along the septal axis (mm from the LV centre)
        self.rv_axes = ((outer - inner) / 2, sep * (0.7 + 0.4 * f))  # radial, tangential semi-axes (mm)
        d = (outer + inner) / 2
        self.rv_centre = np.array([d * math.cos(rv_th), d * math.sin(rv_th)])
        self.rv_angle = rv_th
        self.rv_wall = 3.0
        self.t = np.arange(self.frames) / self.frames
        self.s = contraction_phase(self.t, subject.t_es)
        self.psi = math.radians(sl.twist_deg) * self.s
        self.drift = np.stack([sl.drift_mm[0] * self.s, sl.drift_mm[1] * self.s], axis=1)

    # -- grids
    def pixel_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) in mm of every pixel centre relative to the LV centre, each (H, W)."""
        c = (np.arange(self.size) + 0.5 - self.size / 2) * self.spacing
        y, x = np.meshgrid(c, c, indexing="ij")
        return x - self.centre[0], y - self.centre[1]

    def _lut(self, theta: np.ndarray) -> np.ndarray:
        return np.rint(theta * (N_ANGLES / TWO_PI)).astype(np.int64) % N_ANGLES

    def radii(self) -> tuple[np.ndarray, np.ndarray]:
        """Endocardial and epicardial radius (mm), each (T, N_ANGLES), at ``self.angles``."""
        s = self.s[:, None]
        endo = self.endo0[None] * (1.0 - self.c[None] * s)
        epi = np.sqrt(endo**2 + self.area0[None] * (1.0 + self.lam[None] * s))
        return endo, epi

    def wall_thickness(self) -> np.ndarray:
        """Wall thickness (mm) per frame and angle, (T, N_ANGLES)."""
        endo, epi = self.radii()
        return epi - endo

    def thickening(self) -> np.ndarray:
        """Systolic wall thickening per angle (ES thickness / ED thickness - 1), (N_ANGLES,)."""
        th = self.wall_thickness()
        es = int(np.argmax(self.s))
        return th[es] / th[0] - 1.0

    def pixel_to_wall(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """ED wall coordinates of pixel centres: (u, theta), u = 0 at the endocardium, 1 at the epicardium."""
        x = (np.asarray(cols) + 0.5 - self.size / 2) * self.spacing - self.centre[0]
        y = (np.asarray(rows) + 0.5 - self.size / 2) * self.spacing - self.centre[1]
        r, th = np.hypot(x, y), np.arctan2(y, x) % TWO_PI
        i = self._lut(th)
        return (r - self.endo0[i]) / (self.epi0[i] - self.endo0[i]), th

    def wall_to_pixel(self, u: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inverse of :meth:`pixel_to_wall`: fractional (row, col) of ED wall coordinates."""
        i = self._lut(np.asarray(theta) % TWO_PI)
        r = self.endo0[i] + np.asarray(u) * (self.epi0[i] - self.endo0[i])
        x, y = r * np.cos(theta) + self.centre[0], r * np.sin(theta) + self.centre[1]
        return y / self.spacing + self.size / 2 - 0.5, x / self.spacing + self.size / 2 - 0.5

    # -- labels
    def label(self) -> np.ndarray:
        """Label map at ED (frame 0): uint8 (H, W), 0 bg, 1 myocardium, 2 infarct, 3 MVO (nested)."""
        x, y = self.pixel_mm()
        r = np.hypot(x, y)
        i = self._lut(np.arctan2(y, x))
        endo, epi = self.endo0[i], self.epi0[i]
        u = (r - endo) / (epi - endo)
        myo = (r >= endo) & (r < epi)
        lab = myo.astype(np.uint8)
        lab[myo & (u < self.infarct_depth[i])] = 2
        lab[myo & (u < self.mvo_depth[i])] = 3
        return lab

    # -- rendering
    def _tissue(self, x0, y0, r0, idx, frame_mod=None):
        """Noise-free signal at reference (ED) coordinates (mm rel. LV centre; r0 radius; idx angle LUT index)."""
        sl, subj, eps = self.slice, self.subject, self.eps
        X, Y = x0 + self.centre[0], y0 + self.centre[1]  # relative to the image centre
        out = np.full(np.broadcast(x0, y0).shape, 0.02, dtype=np.float32)

        def put(mask, value):
            nonlocal out
            out = out + mask * (value - out)

        def ellipse_d(cx, cy, a, b, ang=0.0):
            dx, dy = X - cx, Y - cy
            if ang:
                ca, sa = math.cos(ang), math.sin(ang)
                dx, dy = ca * dx + sa * dy, -sa * dx + ca * dy
            rho = np.sqrt((dx / a) ** 2 + (dy / b) ** 2)
            return (rho - 1.0) * min(a, b)

        bs = subj.body_scale
        put(_soft_inside(ellipse_d(0, 12, 150 * bs, 110 * bs), eps), sl.fat)
        put(_soft_inside(ellipse_d(0, 12, 140 * bs, 100 * bs), eps), 0.33)
        put(_soft_inside(ellipse_d(0, 10, 122 * bs, 82 * bs), eps), 0.06)  # lungs
        mediastinum = ellipse_d(self.centre[0] - 14, self.centre[1] + 4, 62, 50, math.radians(subj.orientation_deg))
        put(_soft_inside(mediastinum, eps), 0.40)
        put(_soft_inside(np.hypot(X + 20, Y - 60) - 11, eps), 0.95)  # descending aorta
        put(_soft_inside(np.hypot(X - 2, Y - 86) - 16, eps), 0.45)  # vertebral body
        # heart: relative to LV centre
        endo, epi = self.endo0[idx], self.epi0[idx]
        ca, sa = math.cos(self.rv_angle), math.sin(self.rv_angle)
        dx, dy = x0 - self.rv_centre[0], y0 - self.rv_centre[1]
        ex, ey = ca * dx + sa * dy, -sa * dx + ca * dy
        ra, rb = self.rv_axes
        rho = np.sqrt((ex / ra) ** 2 + (ey / rb) ** 2)
        rv_cav_d = (rho - 1.0) * ra
        fat_d = np.minimum(r0 - epi, rv_cav_d - self.rv_wall) - 4.0
        put(_soft_inside(fat_d, eps) * (0.75 + 0.25 * np.cos(3 * self.angles[idx] + subj.shape[4])), sl.fat)
        outside_lv = _soft_inside(epi - r0, eps)  # 1 outside the epicardium
        put(_soft_inside(rv_cav_d - self.rv_wall, eps) * outside_lv, 0.30)  # RV free wall
        blood = sl.blood if frame_mod is None else sl.blood * frame_mod
        put(_soft_inside(rv_cav_d, eps) * outside_lv, blood * 0.97)
        myo_value = sl.myocardium
        if self.contrast != 0.0:
            u = (r0 - endo) / (epi - endo)
            inf = _soft_inside((u - self.infarct_depth[idx]) * (epi - endo), eps)
            mvo = _soft_inside((u - self.mvo_depth[idx]) * (epi - endo), eps)
            myo_value = sl.myocardium * (1.0 + self.contrast * (inf - 2.0 * mvo))
        put(_soft_inside(r0 - epi, eps), myo_value)
        cav = _soft_inside(r0 - endo, eps)
        for px, py, rp in self.papillary:
            cav = cav * (1.0 - _soft_inside(np.hypot(x0 - px, y0 - py) - rp, eps))
        put(cav, blood)
        return out

    def _bias(self, X, Y) -> np.ndarray:
        b = self.slice.bias
        L = FOV_MM / 2
        return 1.0 + b[0] * X / L + b[1] * Y / L + b[2] * (X * X - Y * Y) / L**2 + b[3] * X * Y / L**2

    def render_clean(self) -> np.ndarray:
        """Noise-free signal (T, H, W) float32, blood ~ 1 (before bias field and noise)."""
        T = self.frames
        x, y = self.pixel_mm()
        r_abs = np.hypot(x, y)
        idx_static = self._lut(np.arctan2(y, x))
        static = self._tissue(x, y, r_abs, idx_static)
        out = np.repeat(static[None].astype(np.float32), T, axis=0)
        roi = r_abs < 67.0
        f32 = np.float32
        px, py, ra = x[roi].astype(f32), y[roi].astype(f32), r_abs[roi].astype(f32)
        w1 = _taper(ra, f32(40.0), f32(65.0))[None]
        s = self.s[:, None].astype(f32)
        drift = self.drift.astype(f32)
        qx = px[None] - drift[:, :1] * w1
        qy = py[None] - drift[:, 1:] * w1
        r = np.hypot(qx, qy)
        theta = np.arctan2(qy, qx) - self.psi[:, None].astype(f32) * w1
        idx = self._lut(theta)
        L = self._f32
        endo0, area0, c, lam = L["endo0"][idx], L["area0"][idx], L["c"][idx], L["lam"][idx]
        endo_t = endo0 * (1.0 - c * s)
        gain = 1.0 + lam * s
        epi_t2 = endo_t**2 + area0 * gain
        epi0_2 = endo0**2 + area0
        r2 = r * r
        w2 = _taper(r - np.sqrt(epi_t2), f32(0.0), f32(20.0))
        r0_2 = np.where(
            r < endo_t, r2 * (endo0 / endo_t) ** 2,
            np.where(r2 < epi_t2, endo0**2 + (r2 - endo_t**2) / gain, r2 + (epi0_2 - epi_t2) * w2))
        r0 = np.sqrt(np.maximum(r0_2, f32(0.0)))
        x0, y0 = r0 * np.cos(theta), r0 * np.sin(theta)
        mod = (1.0 + 0.04 * np.sin(TWO_PI * self.t + self.slice.blood_phase))[:, None].astype(f32)
        out[:, roi] = self._tissue(x0, y0, r0, idx, frame_mod=mod)
        return out

    def render(self) -> np.ndarray:
        """The cine as uint8 (H, W, T): bias field, Rician noise at the scan's SNR, blood ~ 200."""
        clean = self.render_clean()
        x, y = self.pixel_mm()
        X, Y = x + self.centre[0], y + self.centre[1]
        sig = clean
        sig *= self._bias(X, Y)[None].astype(np.float32)
        sigma = np.float32(self.slice.blood / self.slice.snr)
        rng = _rng(self.seed, 0xC1E, self.subject.index, self.slice.slice_index)
        n = rng.standard_normal((2,) + sig.shape, dtype=np.float32)
        n *= sigma
        n[0] += sig
        np.square(n, out=n)
        mag = n[0]
        mag += n[1]
        np.sqrt(mag, out=mag)
        mag *= np.float32(200.0 * self.slice.gain)
        np.minimum(mag, np.float32(255.0), out=mag)
        mag += np.float32(0.5)  # round half up
        img = np.moveaxis(mag, 0, -1).astype(np.uint8)  # (H, W, T), C-contiguous copy
        return img


# --------------------------------------------------------------------------- dataset generation


def _scan_id(subject: SubjectPlan, sl: SlicePlan) -> str:
    return f"{subject.subject_id}_sl{sl.slice_index:02d}"


def _worker_init() -> None:
    """Keep freed memory in the worker's heap (glibc): the per-scan arrays are reused, not re-faulted.

    Only the pool's worker processes are tuned; without glibc this does nothing.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 256 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
        libc.mallopt(-2, 64 << 20)  # M_TOP_PAD
    except (OSError, AttributeError):
        pass


def _render_job(job: tuple) -> dict:
    out_dir, subj, sl, size, frames, contrast, healthy, seed = job
    from ssnet.io import save_nifti

    scan = PhantomScan(subj, sl, size=size, frames=frames, contrast=contrast, healthy_lesion_motion=healthy, seed=seed)
    sid = _scan_id(subj, sl)
    label = scan.label()
    cine = scan.render()
    sp = (scan.spacing, scan.spacing)
    save_nifti(Path(out_dir) / "cines" / f"{sid}.nii.gz", cine, sp)
    save_nifti(Path(out_dir) / "labels" / f"{sid}.nii.gz", label, sp)
    counts = np.bincount(label.ravel(), minlength=4)
    es = int(np.argmax(scan.s))
    return {
        "scan_id": sid, "subject_id": subj.subject_id, "slice_index": sl.slice_index, "n_slices": len(subj.slices),
        "z": round(sl.z, 4), "has_infarct": bool(counts[2] + counts[3] > 0), "has_mvo": bool(counts[3] > 0),
        "myocardium_px": int(counts[1:].sum()), "infarct_px": int(counts[2:].sum()), "mvo_px": int(counts[3]),
        "es_frame": es, "snr": round(sl.snr, 3),
    }


def _arguments(subjects, size, frames, seed, difficulty, contrast, healthy_lesion_motion) -> dict:
    return {"subjects": int(subjects), "size": int(size), "frames": int(frames), "seed": int(seed),
            "difficulty": difficulty, "contrast": float(contrast), "healthy_lesion_motion": bool(healthy_lesion_motion)}


def _validate(subjects, size, frames, seed, difficulty, contrast, workers) -> None:
    if difficulty not in PRESETS:
        raise SsnetError(f"unknown difficulty {difficulty!r}; choose one of {', '.join(DIFFICULTIES)}")
    if int(subjects) < 1:
        raise SsnetError(f"--subjects must be >= 1, got {subjects}")
    if int(size) < 32:
        raise SsnetError(f"--size must be >= 32 pixels, got {size}")
    if int(frames) < 2:
        raise SsnetError(f"--frames must be >= 2, got {frames}")
    if int(seed) < 0:
        raise SsnetError(f"--seed must be >= 0, got {seed}")
    if not (isinstance(contrast, (int, float)) and math.isfinite(contrast) and abs(contrast) <= 0.5):
        raise SsnetError(f"--contrast must be a number in [-0.5, 0.5], got {contrast}")
    if workers is not None and int(workers) < 1:
        raise SsnetError(f"--workers must be >= 1, got {workers}")


def _read_json(path: Path) -> dict | None:
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _up_to_date(out: Path, args: dict) -> bool:
    """True when ``out`` holds a complete phantom dataset generated with ``args``."""
    old = _read_json(out / "dataset.json") if (out / "dataset.json").is_file() else None
    return (old is not None and old.get("generator") == __name__ and old.get("version") == PHANTOM_VERSION
            and old.get("arguments") == args and (out / "manifest.csv").is_file())


def generate_phantom(out_dir, *, subjects: int = PAPER_SUBJECTS, size: int = 224, frames: int = 30, seed: int = 0,
                     difficulty: str = "paper", contrast: float = 0.0, workers: int | None = None,
                     healthy_lesion_motion: bool = False, force: bool = False) -> Path:
    """Write the phantom dataset into ``out_dir`` (see the module docstring) and return ``out_dir``.

    Raises :class:`SsnetError` for bad arguments or a folder that holds a different dataset
    (unless ``force``). Identical arguments into an existing complete dataset are a no-op.
    """
    from ssnet.data.contract import write_manifest
    from ssnet.io import atomic_write_json

    _validate(subjects, size, frames, seed, difficulty, contrast, workers)
    out = Path(out_dir)
    args = _arguments(subjects, size, frames, seed, difficulty, contrast, healthy_lesion_motion)
    meta_path = out / "dataset.json"
    if out.exists() and not out.is_dir():
        raise input_error(out, "exists and is not a folder")
    old_scans: set[str] = set()
    if out.is_dir() and any(out.iterdir()):
        if _up_to_date(out, args):
            return out
        old = _read_json(meta_path) if meta_path.is_file() else None
        if not force:
            if old is not None and old.get("generator") == __name__:
                diff = sorted(k for k in args if old.get("arguments", {}).get(k) != args[k])
                what = f"a phantom dataset with different arguments ({', '.join(diff) or 'version'})"
            elif old is not None:
                what = "a different dataset (dataset.json from another generator)"
            else:
                what = "files but no phantom dataset.json (another dataset, or an interrupted run)"
            raise input_error(out, f"already holds {what}; refusing to overwrite (use --force or another --out)")
        if old is not None:
            old_scans = {s.get("scan_id", "") for s in old.get("scans", [])}
        if meta_path.exists():
            meta_path.unlink()  # the folder is incomplete until the new dataset.json is written

    plan = plan_cohort(subjects, seed, difficulty)
    jobs = [(str(out), subj, sl, int(size), int(frames), float(contrast), bool(healthy_lesion_motion), int(seed))
            for subj in plan for sl in subj.slices]
    (out / "cines").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    n_workers = int(workers) if workers is not None else min(2, os.cpu_count() or 1)
    n_workers = max(1, min(n_workers, len(jobs)))
    if n_workers == 1:
        stats = [_render_job(j) for j in jobs]
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        # forkserver: safe when the caller already runs threads (e.g. torch); fork would be unsafe there
        ctx = mp.get_context("forkserver") if "forkserver" in mp.get_all_start_methods() else mp.get_context("spawn")
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=ctx, initializer=_worker_init) as pool:
            stats = list(pool.map(_render_job, jobs, chunksize=4))

    for sid in sorted(old_scans - {s["scan_id"] for s in stats}):
        for sub in ("cines", "labels"):
            p = out / sub / f"{sid}.nii.gz"
            if p.is_file():
                p.unlink()
    sp = f"{FOV_MM / int(size):.6f}"
    write_manifest(out, [{"scan_id": s["scan_id"], "subject_id": s["subject_id"], "cine": f"cines/{s['scan_id']}.nii.gz",
                          "label": f"labels/{s['scan_id']}.nii.gz", "spacing_row": sp, "spacing_col": sp} for s in stats])
    import ssnet

    n_pos = sum(s["has_mvo"] for s in stats)
    mvo_share = [s["mvo_px"] / max(1, s["myocardium_px"]) for s in stats if s["has_mvo"]]
    meta = {
        "name": "ssnet motion-only MVO phantom",
        "generator": __name__, "version": PHANTOM_VERSION, "ssnet_version": ssnet.__version__,
        "arguments": args,
        "description": "Synthetic short-axis cine CMR; MVO and infarct visible only through wall motion "
                       "(contrast=0: same intensity distribution as healthy myocardium). Frame 0 = end-diastole; "
                       "labels drawn at frame 0.",
        "geometry": {"fov_mm": FOV_MM, "spacing_mm": FOV_MM / int(size), "cine_shape": [int(size), int(size), int(frames)],
                     "cine_dtype": "uint8", "label_dtype": "uint8"},
        "classes": {"0": "background", "1": "myocardium", "2": "infarct", "3": "mvo"},
        "preset": {k: list(v) for k, v in PRESETS[difficulty].items()},
        "summary": {
            "subjects": len(plan), "scans": len(stats), "mvo_subjects": sum(p.has_mvo for p in plan),
            "mvo_scans": n_pos, "mvo_scan_share": round(n_pos / len(stats), 4),
            "mvo_px_per_positive_scan_mean": round(float(np.mean([s["mvo_px"] for s in stats if s["has_mvo"]])), 2)
            if n_pos else 0.0,
            "mvo_share_of_myocardium_median": round(float(np.median(mvo_share)), 4) if n_pos else 0.0,
        },
        "subjects": [{k: v for k, v in asdict(p).items() if k != "slices"} | {"n_slices": len(p.slices)} for p in plan],
        "scans": stats,
    }
    atomic_write_json(meta, meta_path)
    return out


# --------------------------------------------------------------------------- preview


def _preview_panels(items, png) -> None:
    """items: list of (title, cine (H, W, T) array, label (H, W), t_es)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ssnet.io import atomic_write

    ncol = 3
    fig, axes = plt.subplots(len(items), ncol, figsize=(3.0 * ncol, 3.0 * len(items)), squeeze=False)
    for row, (title, cine, label, t_es) in enumerate(items):
        H, W, T = cine.shape
        es = int(round(t_es * T)) % T
        frames = [("ED (labels)", 0), ("mid-systole", max(1, es // 2) if T > 2 else 0), ("ES", es)]
        half = int(round(H * 48 / 224))
        sl_r = slice(max(0, H // 2 - half), min(H, H // 2 + half))
        sl_c = slice(max(0, W // 2 - half), min(W, W // 2 + half))
        for col, (name, f) in enumerate(frames):
            ax = axes[row, col]
            ax.imshow(cine[sl_r, sl_c, f], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            lab = label[sl_r, sl_c]
            for level, colour in ((0.5, "yellow"), (1.5, "orange"), (2.5, "red")):
                if (lab > level).any():
                    ax.contour((lab > level).astype(float), levels=[0.5], colors=colour,
                               linewidths=0.9 if col == 0 else 0.5, linestyles="solid" if col == 0 else "dashed")
            ax.set_title(f"{title}\n{name} (frame {f})" if col == 0 else f"{name} (frame {f})", fontsize=8)
            ax.axis("off")
    fig.suptitle("motion-only MVO phantom: yellow myocardium, orange infarct, red MVO (ED outlines)", fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    with atomic_write(png, "wb") as fh:
        fh.write(buf.getvalue())


def render_preview(png, data_dir=None, *, n_scans: int = 3, size: int = 224, frames: int = 30, seed: int = 0,
                   difficulty: str = "paper", contrast: float = 0.0) -> Path:
    """Write a PNG of ED / mid-systole / ES frames of a few scans with label outlines.

    From ``data_dir`` when given (any dataset in the contract), else from a small cohort rendered in memory.
    """
    png = Path(png)
    items = []
    if data_dir is not None:
        from ssnet.data.contract import load_scan, scans

        data_dir = Path(data_dir)
        meta = _read_json(data_dir / "dataset.json") or {}
        info = {s["scan_id"]: s for s in meta.get("scans", [])}
        t_es = {p["subject_id"]: p.get("t_es", 0.37) for p in meta.get("subjects", [])}
        all_scans = scans(data_dir)
        pos = [s for s in all_scans if info.get(s.scan_id, {}).get("has_mvo")]
        neg = [s for s in all_scans if s not in pos]
        chosen = (pos[: max(1, n_scans - 1)] + neg)[:n_scans]
        for s in chosen:
            cine, label = load_scan(s)  # (T, H, W) float32
            cine = np.clip(np.moveaxis(cine, 0, -1), 0, 255)
            items.append((s.scan_id + (" MVO" if info.get(s.scan_id, {}).get("has_mvo") else ""), cine, label,
                          t_es.get(s.subject_id, 0.37)))
    else:
        _validate(4, size, frames, seed, difficulty, contrast, None)
        plan = plan_cohort(4, seed, difficulty)
        pairs = [(p, sl) for p in plan for sl in p.slices]
        pos = [x for x in pairs if x[1].has_mvo]
        neg = [x for x in pairs if not x[1].has_mvo]
        for subj, sl in (pos[: max(1, n_scans - 1)] + neg)[:n_scans]:
            scan = PhantomScan(subj, sl, size=size, frames=frames, contrast=contrast, seed=seed)
            items.append((_scan_id(subj, sl) + (" MVO" if sl.has_mvo else ""), scan.render(), scan.label(), subj.t_es))
    if not items:
        raise input_error(data_dir, "no scans to preview")
    _preview_panels(items, png)
    return png


# --------------------------------------------------------------------------- CLI


def main(argv: list[str]) -> int:
    """``ssnet phantom``: generate the phantom dataset and/or a preview PNG."""
    p = argparse.ArgumentParser(prog="ssnet phantom", description="Generate the motion-only MVO phantom dataset.")
    p.add_argument("--out", type=Path, help="dataset folder to write (or read, for --preview)")
    defaults = dict(subjects=PAPER_SUBJECTS, size=224, frames=30, seed=0, difficulty="paper", contrast=0.0)
    p.add_argument("--subjects", type=int, help=f"number of subjects (default {PAPER_SUBJECTS} -> 621 scans)")
    p.add_argument("--size", type=int, help="image size in pixels (default 224; FOV fixed at 360 mm)")
    p.add_argument("--frames", type=int, help="frames per cardiac cycle (default 30)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--difficulty", choices=DIFFICULTIES, help="preset: MVO size, hypokinesia, noise (default paper)")
    p.add_argument("--contrast", type=float, help="lesion intensity offset for experiments (default 0: motion only)")
    p.add_argument("--workers", type=int, default=None, help="processes (default min(2, CPUs))")
    p.add_argument("--healthy-lesion-motion", action="store_true", help="control: lesions move like healthy myocardium")
    p.add_argument("--preview", type=Path, help="write a PNG preview of a few scans")
    p.add_argument("--force", action="store_true", help="overwrite a folder holding a different dataset")
    a = p.parse_args(argv)
    explicit = any(getattr(a, k) is not None for k in defaults) or a.healthy_lesion_motion
    for k, v in defaults.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if a.out is None and a.preview is None:
        raise SsnetError("nothing to do: give --out DIR and/or --preview PNG")
    _validate(a.subjects, a.size, a.frames, a.seed, a.difficulty, a.contrast, a.workers)
    if a.preview is not None and a.preview.suffix.lower() != ".png":
        raise input_error(a.preview, "preview must be a .png file")
    preview_only = a.preview is not None and a.out is not None and not explicit and (a.out / "manifest.csv").is_file()
    if a.out is not None and not preview_only:
        import time

        t0 = time.perf_counter()
        args = _arguments(a.subjects, a.size, a.frames, a.seed, a.difficulty, a.contrast, a.healthy_lesion_motion)
        up_to_date = a.out.is_dir() and _up_to_date(a.out, args)
        generate_phantom(a.out, subjects=a.subjects, size=a.size, frames=a.frames, seed=a.seed, difficulty=a.difficulty,
                         contrast=a.contrast, workers=a.workers, healthy_lesion_motion=a.healthy_lesion_motion, force=a.force)
        meta = _read_json(a.out / "dataset.json") or {}
        summ = meta.get("summary", {})
        state = "already up to date" if up_to_date else f"written in {time.perf_counter() - t0:.1f} s"
        print(f"phantom: {summ.get('scans')} scans from {summ.get('subjects')} subjects "
              f"({summ.get('mvo_scans')} with MVO) in {a.out} ({state})")
    if a.preview is not None:
        render_preview(a.preview, a.out, size=a.size, frames=a.frames, seed=a.seed, difficulty=a.difficulty, contrast=a.contrast)
        print(f"preview: {a.preview}")
    return 0


__all__ = [
    "DIFFICULTIES", "FOV_MM", "PRESETS", "PhantomScan", "SlicePlan", "SubjectPlan", "contraction_phase",
    "generate_phantom", "main", "plan_cohort", "render_preview", "slice_counts",
]
