"""Run folders: one per (config, seed); finished runs are never reused, unfinished ones resume.

``<run_root>/<model>-<profile>-s<seed>-<config hash>`` holds ``.hydra/config.yaml``,
``.hydra/overrides.yaml``, ``checkpoints/`` (``best.ckpt``, ``last.ckpt``), ``predictions/``,
``per_case.csv`` and ``run.json`` (status, hashes, timings). A folder whose ``run.json`` says
``done`` is finished: running the same command again creates ``…-2``. A folder without it is an
interrupted run: the same command resumes it from ``checkpoints/last.ckpt``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ssnet.engine.config import config_hash
from ssnet.errors import SsnetError
from ssnet.io import atomic_write_json

LOCK = ".lock"


def read_run(run_dir: Path) -> dict[str, Any]:
    """``run.json`` of a run folder ({} when absent or unreadable)."""
    try:
        return json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return {}


def is_done(run_dir: Path) -> bool:
    return read_run(run_dir).get("status") == "done"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _try_lock(run_dir: Path) -> bool:
    """Take ``run_dir/.lock`` for this process; a lock held by a dead process is taken over."""
    lock = run_dir / LOCK
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and _pid_alive(pid) and pid != os.getpid():
                return False
            lock.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        return True
    return False


def release(run_dir: Path) -> None:
    (run_dir / LOCK).unlink(missing_ok=True)


def acquire_run_dir(run_root: str | Path, name: str) -> tuple[Path, bool]:
    """Return ``(run folder, resuming)``: resume an unfinished ``name`` run, else a fresh folder."""
    root = Path(run_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    for i in range(1, 10_000):
        run_dir = root / (name if i == 1 else f"{name}-{i}")
        if run_dir.exists():
            if is_done(run_dir) or not _try_lock(run_dir):
                continue
            return run_dir, (run_dir / "checkpoints" / "last.ckpt").exists()
        try:
            run_dir.mkdir(parents=True)
        except FileExistsError:
            continue
        if _try_lock(run_dir):
            return run_dir, False
    raise SsnetError(f"{root}: cannot find a free run folder for {name!r}")


def write_status(run_dir: Path, **fields: Any) -> None:
    """Merge ``fields`` into ``run.json`` atomically."""
    data = read_run(run_dir)
    data.update(fields)
    atomic_write_json(data, run_dir / "run.json")


def run_name(cfg: Any) -> str:
    """The deterministic run folder name ``ssnet train`` uses: ``<method>-<profile>-s<seed>-<config hash>``."""
    return f"{cfg.get('method') or cfg.model.key}-{cfg.profile.name}-s{cfg.seed}-{config_hash(cfg)}"


def find_finished(run_root: Path, name: str, current_code: str | None = None,
                  current_split: str | None = None) -> tuple[Path | None, str | None]:
    """The newest finished, reusable run folder ``name`` / ``name-2`` / …, or ``(None, why not)``.

    A finished run is reusable when it was trained on the data's current split (``current_split``: the hash of
    ``split.csv``; a run of another split is never reused, e.g. after ``ssnet split --force``) and, when
    ``current_code`` is given, with the current training code (:func:`ssnet.engine.provenance.stale_reason`).
    """
    from ssnet.engine.provenance import stale_reason

    done = []
    for i in range(1, 10_000):
        d = Path(run_root) / (name if i == 1 else f"{name}-{i}")
        if not d.exists():
            if i > 1:
                break
            continue
        if is_done(d) and (d / "per_case.csv").exists():
            done.append(d)
    newest_why = None
    for d in reversed(done):
        info = read_run(d)
        recorded = info.get("split_hash")
        if current_split and recorded and recorded != current_split:
            why = f"it was trained on another split (split hash {recorded}; split.csv now {current_split})"
        else:
            why = stale_reason(info, current_code) if current_code else None
        if why is None:
            return d, None
        newest_why = newest_why or f"{d.name}: {why}"
    return None, newest_why
