"""Runs of a table as independent jobs: submitit's Slurm or local executor.

``ssnet reproduce TABLE --launcher slurm|local [--launcher-opt key=value ...]`` reads
``configs/launcher/<name>.yaml``, checks it against the schema of Hydra's submitit launcher plugin
(``hydra_plugins.hydra_submitit_launcher.config.SlurmQueueConf`` / ``LocalQueueConf``), turns it into
submitit executor parameters exactly as that plugin does (queue-specific keys get the
``slurm_``/``local_`` prefix), and submits one job per unfinished run. Each job runs
:func:`run_training` (``ssnet train`` with the run's overrides) and writes its run folder under the
table's ``runs/`` with the same deterministic name that ``reproduce`` looks for. The submitted jobs
are listed in ``<results>/<table>_jobs.json``; a later ``reproduce`` (any launcher) collects the
finished runs, and while jobs are still queued or running it reports ``N of M runs finished`` and
waits for a rerun instead of training them a second time.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ssnet.engine.config import CONFIG_DIR
from ssnet.errors import SsnetError
from ssnet.io import atomic_write_json

LAUNCHERS = ("slurm", "local")


def launcher_config(name: str, options: list[str] | None = None) -> dict[str, Any]:
    """``configs/launcher/<name>.yaml`` + ``key=value`` options, validated against the plugin's schema."""
    from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf, SlurmQueueConf

    path = CONFIG_DIR / "launcher" / f"{name}.yaml"
    if name not in LAUNCHERS or not path.is_file():
        raise SsnetError(f"{path}: unknown launcher {name!r}; available: {', '.join(LAUNCHERS)}")
    schema = OmegaConf.structured(SlurmQueueConf if name == "slurm" else LocalQueueConf)
    try:
        user = OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(list(options or [])))
        merged = OmegaConf.merge(schema, {k: v for k, v in OmegaConf.to_container(user).items() if v is not None})
    except Exception as exc:  # omegaconf validation errors
        raise SsnetError(f"{path}: bad launcher option ({' '.join(str(exc).split())})") from None
    data = OmegaConf.to_container(merged, resolve=False)
    data.pop("_target_", None)
    return data


def make_executor(name: str, params: dict[str, Any], out_dir: Path):
    """A submitit executor configured like ``hydra_plugins.hydra_submitit_launcher`` does it."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    params = dict(params)
    folder = params.pop("submitit_folder", None)
    if not folder or "${" in str(folder):
        folder = str(out_dir / ".submitit" / "%j")
    init = {"folder": folder}
    if "max_num_timeout" in params:
        init[f"{name}_max_num_timeout"] = params.pop("max_num_timeout")
    executor = submitit.AutoExecutor(cluster=name, **init)
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    params.pop("name", None)
    update = {k if k in base else f"{name}_{k}": v for k, v in params.items() if v is not None}
    if name == "local":  # the local executor knows only these
        update = {k: v for k, v in update.items() if k in {"timeout_min", "gpus_per_node", "tasks_per_node", "nodes",
                                                           "cpus_per_task", "stderr_to_stdout", "local_setup"}}
    executor.update_parameters(name="ssnet", **update)
    return executor


def run_training(overrides: list[str]) -> str:
    """Job body: ``ssnet train OVERRIDES``; returns the run folder."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from ssnet.experiments import train_run

    return str(train_run(overrides))


def submit(name: str, params: dict[str, Any], runs: list[tuple[str, list[str]]], out_dir: Path, jobs_file: Path) -> list:
    """Submit one job per ``(run name, overrides)``; record them in ``jobs_file``; return the submitit jobs."""
    executor = make_executor(name, params, out_dir)
    with executor.batch():
        jobs = [executor.submit(run_training, overrides) for _, overrides in runs]
    record = {"launcher": name, "jobs": [{"run": run, "job_id": str(j.job_id), "folder": str(j.paths.folder)}
                                         for (run, _), j in zip(runs, jobs)]}
    atomic_write_json(record, jobs_file)
    return jobs


def read_jobs(jobs_file: Path) -> dict[str, Any]:
    try:
        return json.loads(jobs_file.read_text())
    except (OSError, ValueError):
        return {}


def job_active(launcher: str, entry: dict[str, Any]) -> bool:
    """Whether a recorded job may still be queued or running (Slurm: sacct/squeue through submitit;
    local: the job's controller process is alive)."""
    if launcher == "local":
        try:
            os.kill(int(entry["job_id"]), 0)
        except (ProcessLookupError, ValueError):
            return False
        except PermissionError:
            return True
        return True
    try:
        import submitit

        state = submitit.SlurmJob(entry["folder"], entry["job_id"]).state
    except Exception:  # sacct missing or the job forgotten: treat as ended
        return False
    return state.upper() in {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED", "UNKNOWN"}
