"""Which code a run was trained with, and whether a finished run may still be reused.

Every run records in ``run.json``:

* ``git_commit``: ``git rev-parse HEAD`` of the repository holding this package (``null`` when it
  is not a git checkout or git is missing);
* ``git_dirty``: whether the working tree had uncommitted changes (``null`` when unknown);
* ``code_hash``: SHA-256 (12 hex digits) of the *training code* (:data:`CODE_PATHS`): every
  ``.py``/``.yaml``/``.yml`` file under those paths, path and bytes, in path order. It covers
  uncommitted and untracked files too, and does not need git.

All three describe the code the process **started** with (:func:`process_snapshot`, taken once, at the
first call): a process imports its modules once, so the disk at a later run's start may no longer be
the code that runs. When the training code on disk differs from the snapshot at a run's start, the run
records ``code_hash: null`` and ``code_changed_in_process: true`` and is never reused.

The training code (:data:`CODE_PATHS`) is what a trained model depends on: the models
(``ssnet/models``, ``baselines``), the engine (``ssnet/engine``), the data pipeline
(``ssnet/data``) and the Hydra configs (``configs``). Scoring, statistics and tables are not in
the set: they are recomputed from the predictions on every ``reproduce`` call.

``ssnet reproduce`` reuses a finished run only when its ``code_hash`` equals the current one
(equivalently: ``git diff --quiet <git_commit> -- CODE_PATHS`` and no uncommitted change under those
paths at either end) and it was trained on the current split (:func:`ssnet.engine.runs.find_finished`);
otherwise it retrains and says why in one line (:func:`stale_reason`).
"""
from __future__ import annotations

import hashlib
import platform
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
CODE_PATHS: tuple[str, ...] = ("ssnet/models", "baselines", "ssnet/engine", "ssnet/data", "configs")
CODE_SUFFIXES = {".py", ".yaml", ".yml"}


def _git(*args: str) -> str | None:
    try:
        res = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout if res.returncode == 0 else None


def code_hash(root: Path | None = None) -> str:
    """Hash of the training code under ``root`` (default: this checkout; see the module docstring)."""
    root = REPO_ROOT if root is None else root
    h = hashlib.sha256()
    for rel in CODE_PATHS:
        base = root / rel
        if not base.exists():
            continue
        for path in sorted(p for p in base.rglob("*") if p.suffix in CODE_SUFFIXES and "__pycache__" not in p.parts):
            h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def _git_state() -> tuple[str | None, bool | None]:
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return None, None
    status = _git("status", "--porcelain", "--untracked-files=normal")
    return commit.strip(), (bool(status.strip()) if status is not None else None)


@lru_cache(maxsize=1)
def process_snapshot() -> dict[str, Any]:
    """``{"git_commit", "git_dirty", "code_hash"}`` of the checkout, read together once per process.

    ``ssnet``'s entry point takes it before it imports any training code, so it describes what the
    process loaded; :func:`provenance` compares it with the disk at every run's start."""
    commit, dirty = _git_state()
    return {"git_commit": commit, "git_dirty": dirty, "code_hash": code_hash()}


def cpu_model() -> str | None:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere), or None."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine() -> dict[str, Any]:
    """What a CPU run's floating-point results depend on besides the code: torch version, the CPU's vector
    capability (the kernels torch picks: e.g. AVX2 vs AVX512 sum in another order) and torch's thread count.
    Bit-identical reruns need all three equal (measured: 1 vs 2 threads, or another CPU, give other weights)."""
    import torch

    return {"torch_version": torch.__version__, "cpu_model": cpu_model(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "torch_threads": torch.get_num_threads()}


def provenance() -> dict[str, Any]:
    """:func:`process_snapshot` plus :func:`machine`; ``code_hash`` is null (and ``code_changed_in_process``
    true) when the training code on disk is no longer the code this process started with."""
    info = dict(process_snapshot())
    if code_hash() != info["code_hash"]:
        info.update(code_hash=None, code_changed_in_process=True)
    return {**info, **machine()}


def changed_files(commit: str) -> list[str]:
    """Training-code files that differ between ``commit`` and the working tree (tracked and untracked)."""
    diff = _git("diff", "--name-only", commit, "--", *CODE_PATHS) or ""
    untracked = _git("ls-files", "--others", "--exclude-standard", "--", *CODE_PATHS) or ""
    return sorted(set(diff.split()) | set(untracked.split()))


def stale_reason(info: dict[str, Any], current: str | None = None) -> str | None:
    """Why a finished run (its ``run.json``) may not be reused; ``None`` when it may."""
    if info.get("code_changed_in_process"):
        return "the training code changed on disk while the process that trained it was running"
    recorded = info.get("code_hash")
    if not recorded:
        return "it records no code hash (trained before code provenance was recorded)"
    current = current or code_hash()
    if recorded == current:
        return None
    commit = info.get("git_commit")
    files = changed_files(commit) if commit else []
    where = f" since commit {commit[:10]}" if commit else ""
    if files:
        more = f" and {len(files) - 3} more" if len(files) > 3 else ""
        return f"the training code changed{where} ({', '.join(files[:3])}{more})"
    dirty = " (it was trained from uncommitted changes)" if info.get("git_dirty") else ""
    return f"the training code changed{where}{dirty}"
