"""Readers shared by the importers: DICOM, TIFF, PNG, NIfTI and contour files.

Every reader turns any failure (missing file, corrupt bytes, wrong shape, bad values) into one
:class:`~ssnet.errors.SsnetError` line of the form ``<file>: <problem>``. Files inside a tarball are
named ``<tarball>[<member>]``.
"""
from __future__ import annotations

import io
import logging
import re
import tarfile
import warnings
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssnet.data.contract import NUM_CLASSES
from ssnet.errors import SsnetError, input_error

__all__ = [
    "DicomImage", "DicomSlice", "iter_dicom_sources", "read_dicom", "group_dicom_slices", "read_tiff_frames", "read_png", "read_png_frames",
    "read_image_2d", "read_nifti", "check_label", "to_cine_dtype", "read_contour", "polygon_mask", "natural_key",
]


def _why(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines() or [""]
    text = msg[0] if len(msg[0]) <= 160 else msg[0][:157] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def natural_key(name: str) -> list:
    """Sort key comparing digit runs numerically: ``frame2`` < ``frame10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


# ----------------------------------------------------------------------------------------------- DICOM
@dataclass
class DicomImage:
    """The header fields the importers need, plus the decoded pixels (Rows, Cols)."""

    name: str                  # display name used in error messages
    number: int | None         # image number from the file name (``59.dcm`` -> 59), None if not numeric
    instance: int | None       # InstanceNumber
    slice_location: float      # SliceLocation, else ImagePositionPatient projected on the slice normal
    trigger_time: float | None  # TriggerTime in ms (None only when read with ``require_trigger=False``)
    rows: int
    cols: int
    spacing: tuple[float, float] | None  # PixelSpacing (row spacing, column spacing) in mm
    cardiac_images: int | None  # CardiacNumberOfImages
    pixels: np.ndarray
    series_uid: str = ""       # SeriesInstanceUID ("" when absent)
    patient_id: str = ""       # PatientID ("" when absent)
    series_description: str = ""


@dataclass
class DicomSlice:
    """The frames of one slice position (of one series), ordered in time."""

    location: float
    frames: list[DicomImage]   # ordered by TriggerTime (or InstanceNumber when no frame has a TriggerTime)
    series_uid: str = ""
    index: int = 0             # 1-based, acquisition order (within the series when grouped by series)
    ordered_by: str = "TriggerTime"


def iter_dicom_sources(source: Path, exclude: Path | None = None) -> Iterator[tuple[str, str, bytes]]:
    """Yield ``(display_name, base_name, bytes)`` for every DICOM file of a tarball or a folder.

    Files ending ``.dcm`` or ``.ima`` (any case) or without an extension are taken; hidden files and
    ``DICOMDIR`` index files and hidden folders are skipped, and so is the folder ``exclude`` (when reading a
    folder).
    """
    def wanted(name: str) -> bool:
        base = name.rsplit("/", 1)[-1]
        return (bool(base) and not base.startswith(".") and base.upper() != "DICOMDIR"
                and (base.lower().endswith((".dcm", ".ima")) or "." not in base))

    if source.is_dir():
        files = sorted((p for p in source.rglob("*") if p.is_file() and wanted(p.name)
                        and not any(part.startswith(".") for part in p.relative_to(source).parts)
                        and not (exclude is not None and exclude in p.parents)), key=lambda p: natural_key(str(p)))
        for p in files:
            try:
                data = p.read_bytes()
            except OSError as exc:
                raise input_error(p, f"cannot read file ({_why(exc)})") from exc
            yield str(p), p.name, data
        return
    if not source.is_file():
        raise input_error(source, "file not found")
    try:
        with tarfile.open(source, "r:*") as tar:
            for member in tar:
                if not member.isfile() or not wanted(member.name):
                    continue
                fh = tar.extractfile(member)
                data = fh.read() if fh is not None else b""
                yield f"{source}[{member.name}]", member.name.rsplit("/", 1)[-1], data
    except SsnetError:
        raise
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        raise input_error(source, f"corrupt or unreadable archive ({_why(exc)})") from exc


def _number(x, name: str, tag: str, required: bool = True) -> float | None:
    if x is None or x == "":
        if required:
            raise input_error(name, f"DICOM header lacks {tag}")
        return None
    try:
        return float(x)
    except (TypeError, ValueError) as exc:
        raise input_error(name, f"DICOM {tag} is not a number: {x!r}") from exc


def read_dicom(data: bytes, name: str, base: str | None = None, require_trigger: bool = True) -> DicomImage:
    """Parse one DICOM image from bytes; any problem raises one line naming ``name``.

    ``require_trigger=False`` accepts images without TriggerTime (``trigger_time`` None);
    :func:`group_dicom_slices` then orders such frames by InstanceNumber.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    if not data:
        raise input_error(name, "empty file (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about non-conformant UIDs in many real files
        try:
            ds = pydicom.dcmread(io.BytesIO(data))
        except InvalidDicomError as exc:
            raise input_error(name, "not a DICOM file (no 'DICM' file header)") from exc
        except Exception as exc:
            raise input_error(name, f"corrupt DICOM ({_why(exc)})") from exc
        try:
            rows, cols = int(ds.Rows), int(ds.Columns)
        except Exception as exc:
            raise input_error(name, "DICOM header lacks Rows/Columns (not an image, or truncated)") from exc
        if "PixelData" not in ds:
            raise input_error(name, "DICOM has no pixel data (truncated file?)")
        try:
            pixels = np.asarray(ds.pixel_array)
        except Exception as exc:
            raise input_error(name, f"cannot decode DICOM pixel data, file truncated or corrupt ({_why(exc)})") from exc
        if pixels.shape != (rows, cols):
            raise input_error(name, f"DICOM pixel data has shape {pixels.shape}, expected a single {rows}x{cols} frame")
        loc = ds.get("SliceLocation")
        if loc is None and ds.get("ImagePositionPatient") is not None and ds.get("ImageOrientationPatient") is not None:
            iop = np.asarray([float(v) for v in ds.ImageOrientationPatient])
            loc = float(np.dot(np.cross(iop[:3], iop[3:]), [float(v) for v in ds.ImagePositionPatient]))
        slice_location = _number(loc, name, "SliceLocation (0020,1041) and ImagePositionPatient")
        trigger = _number(ds.get("TriggerTime"), name, "TriggerTime (0018,1060)", required=require_trigger)
        ps = ds.get("PixelSpacing")
        spacing = None
        if ps is not None and len(ps) == 2:
            spacing = (float(ps[0]), float(ps[1]))
            if min(spacing) <= 0:
                raise input_error(name, f"DICOM PixelSpacing is not positive: {list(ps)}")
        n_card = ds.get("CardiacNumberOfImages")
        instance = ds.get("InstanceNumber")
        series_uid = str(ds.get("SeriesInstanceUID", "") or "").strip()
        patient_id = str(ds.get("PatientID", "") or "").strip()
        description = str(ds.get("SeriesDescription", "") or "").strip()
    stem = (base or name).rsplit("/", 1)[-1].split(".")[0]
    return DicomImage(
        name=name, number=int(stem) if stem.isdigit() else None,
        instance=int(instance) if instance not in (None, "") else None,
        slice_location=float(slice_location), trigger_time=None if trigger is None else float(trigger), rows=rows,
        cols=cols, spacing=spacing, cardiac_images=int(n_card) if n_card not in (None, "") else None, pixels=pixels,
        series_uid=series_uid, patient_id=patient_id, series_description=description,
    )


def _order_frames(frames: list[DicomImage], where: str) -> str:
    """Sort one slice's frames in time, in place; returns the tag used (TriggerTime or InstanceNumber)."""
    with_tt = [im for im in frames if im.trigger_time is not None]
    if with_tt and len(with_tt) < len(frames):
        lacking = next(im for im in frames if im.trigger_time is None)
        raise input_error(lacking.name, f"DICOM header lacks TriggerTime (0018,1060), which the other frames of "
                                        f"{where} have ({with_tt[0].name}); cannot order the frames")
    if with_tt:
        frames.sort(key=lambda im: (im.trigger_time, natural_key(im.name)))
        key, tag, unit = (lambda im: im.trigger_time), "TriggerTime", " ms"
    else:
        lacking = next((im for im in frames if im.instance is None), None)
        if lacking is not None:
            raise input_error(lacking.name, "DICOM header lacks both TriggerTime (0018,1060) and InstanceNumber "
                                            "(0020,0013); cannot order the frames in time")
        frames.sort(key=lambda im: (im.instance, natural_key(im.name)))
        key, tag, unit = (lambda im: im.instance), "InstanceNumber", ""
    values = [key(im) for im in frames]
    dup = next((i for i in range(1, len(values)) if values[i] == values[i - 1]), None)
    if dup is not None:
        raise input_error(frames[dup].name, f"{tag} {values[dup]:g}{unit} repeats in {where} (also "
                                            f"{frames[dup - 1].name}); cannot order the frames")
    return tag


def group_dicom_slices(images: list[DicomImage], source: Path | str, by_series: bool = False) -> list[DicomSlice]:
    """Group images into slices and order each slice's frames in time; check sizes, spacing and frame counts.

    Slices are keyed by SliceLocation (rounded to 0.01 mm), and by SeriesInstanceUID first when ``by_series``.
    Frames are ordered by TriggerTime; when no frame of a slice has one, by InstanceNumber (a slice where only
    some frames have a TriggerTime is refused). Within a slice every frame must have one image size and one
    PixelSpacing; every slice (of a series, when ``by_series``) must have the same number of frames
    (``CardiacNumberOfImages`` when the headers agree on one). Slices are numbered 1.. in acquisition order
    (smallest file number ``n.dcm``, else InstanceNumber; by location when neither is known), per series when
    ``by_series`` (then by smallest InstanceNumber, file names being meaningless across vendors).
    """
    groups: dict[tuple[str, float], list[DicomImage]] = defaultdict(list)
    for im in images:
        groups[(im.series_uid if by_series else "", round(im.slice_location, 2) + 0.0)].append(im)
    per_series: dict[str, list[DicomSlice]] = defaultdict(list)
    for (uid, loc), frames in groups.items():
        where = f"slice {loc:g} mm" + (f" of series {uid}" if by_series and uid else "")
        tag = _order_frames(frames, where)
        first = frames[0]
        for im in frames[1:]:
            if (im.rows, im.cols) != (first.rows, first.cols):
                raise input_error(im.name, f"image size {im.rows}x{im.cols} differs from {first.rows}x{first.cols} "
                                           f"of the other frames of {where} ({first.name})")
            if im.spacing != first.spacing:
                raise input_error(im.name, f"PixelSpacing {im.spacing} differs from {first.spacing} of the other "
                                           f"frames of {where} ({first.name})")
        per_series[uid].append(DicomSlice(location=loc, frames=frames, series_uid=uid, ordered_by=tag))
    out: list[DicomSlice] = []
    for uid, slices in per_series.items():
        members = [im for s in slices for im in s.frames]
        declared = {im.cardiac_images for im in members if im.cardiac_images}
        counts = [len(s.frames) for s in slices]
        # the declared count, else the most common one (ties: the larger; a lost frame is likelier than an extra)
        expected = declared.pop() if len(declared) == 1 else max(set(counts), key=lambda c: (counts.count(c), c))
        for s in slices:
            if len(s.frames) != expected:
                what = f"series {uid}" if by_series and uid else Path(str(source)).name
                raise input_error(s.frames[0].name, f"slice at {s.location:g} mm has {len(s.frames)} frames, expected "
                                                    f"{expected} (inconsistent frame count in {what})")

        def order(s: DicomSlice):
            if by_series:  # any vendor: file names carry no meaning, InstanceNumber does
                nums = [im.instance for im in s.frames]
            else:          # Sunnybrook: n.dcm numbers the images in acquisition order
                nums = [im.number if im.number is not None else im.instance for im in s.frames]
            return (0, min(nums), s.location) if all(n is not None for n in nums) else (1, 0, s.location)

        slices.sort(key=order)
        for k, s in enumerate(slices, 1):
            s.index = k
        out.extend(slices)
    return out


# ----------------------------------------------------------------------------------------- TIFF / PNG
def _to_gray(arr: np.ndarray, path: Path | str, what: str) -> np.ndarray:
    """Accept (H, W) or grey stored as RGB(A)/LA with equal colour channels; refuse real colour."""
    if arr.ndim == 3 and arr.shape[-1] in (2, 3, 4):
        colour = arr[..., :3] if arr.shape[-1] >= 3 else arr[..., :1]
        if colour.shape[-1] == 3 and not (np.array_equal(colour[..., 0], colour[..., 1])
                                          and np.array_equal(colour[..., 0], colour[..., 2])):
            raise input_error(path, f"{what} is a colour image; expected greyscale (one channel)")
        arr = colour[..., 0]
    if arr.ndim != 2:
        raise input_error(path, f"{what} must be a 2-D greyscale image, got shape {tuple(arr.shape)}")
    return arr


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def read_tiff_frames(path: Path) -> np.ndarray:
    """Read a multi-page TIFF as ``(H, W, T)``, one page per frame.

    tifffile reports a broken page chain through logging and then returns fewer pages; that (and page data
    running past the end of the file) is turned into an error instead of a silently shorter cine.
    """
    import tifffile

    if not path.is_file():
        raise input_error(path, "file not found")
    logger = logging.getLogger("tifffile")
    handler, propagate = _Collect(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with tifffile.TiffFile(path) as tif:
            size = tif.filehandle.size
            for i, page in enumerate(tif.pages):
                ends = [int(o) + int(c) for o, c in zip(page.dataoffsets, page.databytecounts)]
                if ends and max(ends) > size:
                    raise input_error(path, f"truncated TIFF: the data of page {i} runs past the end of the file")
            pages = [np.asarray(p.asarray()) for p in tif.pages]
    except SsnetError:
        raise
    except Exception as exc:
        raise input_error(path, f"cannot read TIFF ({_why(exc)})") from exc
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
    if handler.messages:
        text = re.sub(r"^<[^>]*>\s*", "", handler.messages[0].splitlines()[0])[:160]
        raise input_error(path, f"corrupt or truncated TIFF ({text})")
    if not pages:
        raise input_error(path, "TIFF holds no pages")
    if len(pages) == 1 and pages[0].ndim == 3 and pages[0].shape[-1] not in (2, 3, 4):
        return np.moveaxis(pages[0], 0, -1)  # one page holding a (T, H, W) stack
    frames = [_to_gray(p, path, f"page {i}") for i, p in enumerate(pages)]
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        first_bad = next(i for i, f in enumerate(frames) if f.shape != frames[0].shape)
        raise input_error(path, f"pages differ in size: page 0 is {frames[0].shape}, page {first_bad} is {frames[first_bad].shape}")
    return np.stack(frames, axis=-1)


def read_png(path: Path, what: str = "image") -> np.ndarray:
    """Read a PNG (or any Pillow-readable image) as a 2-D greyscale array."""
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - Pillow ships with matplotlib
        raise input_error(path, "reading PNG needs Pillow (pip install pillow)") from exc
    if not path.is_file():
        raise input_error(path, "file not found")
    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im)
    except Exception as exc:
        raise input_error(path, f"cannot read image, corrupt or truncated ({_why(exc)})") from exc
    return _to_gray(arr, path, what)


def read_png_frames(folder: Path) -> np.ndarray:
    """Read ``folder/*.png`` (natural name order) as ``(H, W, T)``; all frames must have one size."""
    files = sorted((p for p in folder.iterdir() if p.suffix.lower() == ".png" and not p.name.startswith(".")),
                   key=lambda p: natural_key(p.name)) if folder.is_dir() else []
    if not files:
        raise input_error(folder, "no *.png frames in this folder")
    frames = []
    for p in files:
        f = read_png(p, "frame")
        if frames and f.shape != frames[0].shape:
            raise input_error(p, f"frame size {f.shape} differs from {files[0].name} {frames[0].shape}")
        if frames and f.dtype != frames[0].dtype:
            raise input_error(p, f"frame pixel type {f.dtype} differs from {files[0].name} ({frames[0].dtype})")
        frames.append(f)
    return np.stack(frames, axis=-1)


def read_image_2d(path: Path, what: str = "label") -> np.ndarray:
    """Read a 2-D image from ``.png`` or ``.tif``/``.tiff``."""
    if path.suffix.lower() in (".tif", ".tiff"):
        arr = read_tiff_frames(path)
        if arr.shape[-1] != 1:
            raise input_error(path, f"{what} must be a single 2-D image, got {arr.shape[-1]} pages")
        return arr[..., 0]
    return read_png(path, what)


# ---------------------------------------------------------------------------------------------- NIfTI
def read_nifti(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """Load a NIfTI as ``(array, zooms)`` (one-line errors); refuses non-numeric data."""
    from ssnet.io import load_nifti

    arr, zooms = load_nifti(path)
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise input_error(path, f"NIfTI has non-numeric or complex data type {arr.dtype}")
    return arr, zooms


# --------------------------------------------------------------------------------------- validation
def check_label(arr: np.ndarray, path: Path | str, shape: tuple[int, int] | None = None,
                cine_name: str | None = None) -> np.ndarray:
    """Validate a label map: 2-D, integer values in 0..3, size equal to the cine's; returns uint8."""
    arr = np.asarray(arr)
    if arr.ndim > 2:
        if int(np.prod(arr.shape[2:])) != 1:
            raise input_error(path, f"label must be 2-D (H, W), got shape {tuple(arr.shape)}")
        arr = arr.reshape(arr.shape[:2])
    if arr.ndim != 2:
        raise input_error(path, f"label must be 2-D (H, W), got shape {tuple(arr.shape)}")
    if shape is not None and arr.shape != tuple(shape):
        of = f" of {cine_name}" if cine_name else ""
        raise input_error(path, f"label size {arr.shape[0]}x{arr.shape[1]} does not match the cine size "
                                f"{shape[0]}x{shape[1]}{of}")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.number):
        raise input_error(path, f"label has non-numeric data type {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
            raise input_error(path, "label must hold integer class values (found non-integer, NaN or Inf values)")
    values = np.unique(arr)
    bad = values[(values < 0) | (values >= NUM_CLASSES)]
    if len(bad):
        shown = ", ".join(str(int(v)) for v in bad[:5])
        raise input_error(path, f"label values must be 0..{NUM_CLASSES - 1} (0 background, 1 myocardium, 2 infarct, "
                                f"3 MVO); found {shown}")
    return arr.astype(np.uint8)


def to_cine_dtype(arr: np.ndarray, path: Path | str) -> np.ndarray:
    """Keep integer cines of up to 16 bits as they are; others become float32. Refuses NaN/Inf."""
    arr = np.asarray(arr)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise input_error(path, f"cine has unsupported data type {arr.dtype}")
    if np.issubdtype(arr.dtype, np.integer) and arr.dtype.itemsize <= 2:
        return arr
    if np.issubdtype(arr.dtype, np.integer):
        lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
        for t in (np.int16, np.uint16):
            if np.iinfo(t).min <= lo and hi <= np.iinfo(t).max:
                return arr.astype(t)
        return arr.astype(np.float32)
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise input_error(path, "cine contains NaN or Inf values")
    return arr


# ------------------------------------------------------------------------------------------ contours
def read_contour(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """Read a contour text file (one ``x y`` pair per line; x = column, y = row) as an (N, 2) array."""
    try:
        text = path.read_text(encoding="utf-8", errors="strict")
    except FileNotFoundError as exc:
        raise input_error(path, "file not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise input_error(path, f"cannot read contour file ({_why(exc)})") from exc
    pts = []
    for i, line in enumerate(text.splitlines(), 1):
        parts = line.replace(",", " ").split()
        if not parts:
            continue
        try:
            if len(parts) != 2:
                raise ValueError
            x, y = float(parts[0]), float(parts[1])
        except ValueError:
            raise input_error(path, f"line {i}: expected two numbers 'x y', got {line.strip()[:40]!r}") from None
        if not (np.isfinite(x) and np.isfinite(y)):
            raise input_error(path, f"line {i}: non-finite coordinate")
        pts.append((x, y))
    if len(pts) < 3:
        raise input_error(path, f"contour has {len(pts)} point(s); a polygon needs at least 3")
    pts_arr = np.asarray(pts, dtype=np.float64)
    h, w = shape
    if (pts_arr[:, 0] < -1).any() or (pts_arr[:, 0] > w).any() or (pts_arr[:, 1] < -1).any() or (pts_arr[:, 1] > h).any():
        raise input_error(path, f"contour points lie outside the {h}x{w} image")
    return pts_arr


def polygon_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boolean (H, W) mask of pixel centres (col, row) = (x, y) inside the closed polygon."""
    from matplotlib.path import Path as MplPath

    h, w = shape
    mask = np.zeros(shape, dtype=bool)
    c0, r0 = max(int(np.floor(points[:, 0].min())), 0), max(int(np.floor(points[:, 1].min())), 0)
    c1, r1 = min(int(np.ceil(points[:, 0].max())), w - 1), min(int(np.ceil(points[:, 1].max())), h - 1)
    if c1 < c0 or r1 < r0:
        return mask
    rr, cc = np.mgrid[r0:r1 + 1, c0:c1 + 1]
    inside = MplPath(points).contains_points(np.column_stack([cc.ravel(), rr.ravel()]).astype(np.float64))
    mask[r0:r1 + 1, c0:c1 + 1] = inside.reshape(rr.shape)
    return mask
