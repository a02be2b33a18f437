"""Where one training step's device time goes: top-level modules (forward, CUDA events) and kernels (profiler).

    python benchmarks/profile_step.py --method ssnet --profile paper            # GPU
    python benchmarks/profile_step.py --method ssnet --profile smoke --steps 1  # CPU smoke (tests)

Builds the same engine pieces as ``bench_train.py`` (config as ``ssnet train`` composes it, the engine's
module, optimiser, on-device data and augmentation, the run's precision), runs ``--warmup`` steps, then

* times the forward of each top-level child module with CUDA events (or wall time on CPU) over ``--steps``
  steps and prints its share of the forward;
* profiles ``--steps`` steps with ``torch.profiler`` and prints the ``--top`` operators by device time
  (self time), with their share of the profiled device time and their self CPU time;
* with ``--data``, times and profiles the data path alone (loader, transfer, on-device augmentation).

``--out`` writes both tables as CSV (``<out>_modules.csv``, ``<out>_ops.csv``).
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parent


def _bench_module() -> Any:
    spec = importlib.util.spec_from_file_location("bench_train", ROOT / "bench_train.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _timed_children(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """Top-level children; containers (ModuleList/Dict, never called themselves) are replaced by their items."""
    out = []
    for name, child in model.named_children():
        if isinstance(child, (torch.nn.ModuleList, torch.nn.ModuleDict)):
            out.extend((f"{name}.{sub}", item) for sub, item in child.named_children())
        else:
            out.append((name, child))
    return out


def module_times(b: Any, batches: list[dict], device: torch.device) -> list[dict[str, Any]]:
    """Forward milliseconds per top-level child, summed over ``batches`` (one training step each)."""
    model = b.module.model
    totals: dict[str, float] = {}
    handles = []
    open_events: dict[str, Any] = {}

    def now() -> Any:
        if device.type == "cuda":
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            return e
        return time.perf_counter()

    def pre(name: str) -> Any:
        def hook(module: Any, args: Any) -> None:
            open_events[name] = now()
        return hook

    def post(name: str) -> Any:
        def hook(module: Any, args: Any, output: Any) -> None:
            pending.append((name, open_events.pop(name), now()))
        return hook

    pending: list[tuple[str, Any, Any]] = []
    for name, child in [("(whole forward)", model), *_timed_children(model)]:
        handles.append(child.register_forward_pre_hook(pre(name)))
        handles.append(child.register_forward_hook(post(name)))
    try:
        for i, batch in enumerate(batches):
            b.step(batch, i)
    finally:
        for h in handles:
            h.remove()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    for name, start, end in pending:
        ms = start.elapsed_time(end) if device.type == "cuda" else 1e3 * (end - start)
        totals[name] = totals.get(name, 0.0) + ms
    n = max(len(batches), 1)
    whole = totals.get("(whole forward)") or 1.0  # children called other than through __call__ are missing
    return [{"module": k, "forward_ms_per_step": round(v / n, 3), "share_of_forward": round(v / whole, 4)}
            for k, v in sorted(totals.items(), key=lambda kv: -kv[1])]


def op_times(run_one: Callable[[int], Any], n: int, device: torch.device, top: int, by_cpu: bool = False) -> list[dict[str, Any]]:
    """The ``top`` operators by self device time (CPU or ``by_cpu``: self CPU time) over ``n`` calls of ``run_one`` (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for i in range(n):
            run_one(i)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    events = prof.key_averages()
    attr = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    if device.type == "cuda" and events and not hasattr(events[0], attr):
        attr = "self_cuda_time_total"
    total = sum(getattr(e, attr) for e in events) or 1.0
    n = max(n, 1)
    rows = sorted(events, key=lambda e: -(e.cpu_time_total if by_cpu else getattr(e, attr)))[:top]
    return [{"op": e.key[:90], "calls_per_step": e.count // n, "ms_per_step": round(getattr(e, attr) / 1e3 / n, 3),
             "cpu_ms_per_step": round(e.self_cpu_time_total / 1e3 / n, 3),
             "cpu_total_ms_per_step": round(e.cpu_time_total / 1e3 / n, 3), "share": round(getattr(e, attr) / total, 4)}
            for e in rows]


def _write(rows: list[dict[str, Any]], path: Path) -> None:
    if not rows:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="ssnet")
    parser.add_argument("--profile", default="paper")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--override", action="append", default=[], help="extra Hydra override")
    parser.add_argument("--data", action="store_true", help="profile the data path (loader + augmentation) instead of the step")
    parser.add_argument("--out", help="CSV prefix: <out>_modules.csv and <out>_ops.csv")
    args = parser.parse_args(argv)
    bench = _bench_module()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    overrides = list(args.override) + (bench.SMOKE if args.profile == "smoke" else [])
    b = bench.Bench(args.method, args.profile, device, overrides)
    it = iter(b.loader(args.warmup + 3 * args.steps))
    for i in range(args.warmup):
        b.step(b.ready(next(it)), i)
    if args.data:  # the data path alone: loader, transfer, on-device augmentation (host time matters here)
        wall = time.perf_counter()
        for _ in range(args.steps):
            b.ready(next(it))
        bench._sync(device)
        print(f"== {args.method} data path: {1e3 * (time.perf_counter() - wall) / args.steps:.2f} ms per batch (host, unsynchronised loop)")
        mods, ops = [], op_times(lambda i: b.ready(next(it)), args.steps, device, args.top, by_cpu=True)
    else:
        mods = module_times(b, [b.ready(next(it)) for _ in range(args.steps)], device)
        ops = op_times(lambda i: b.step(b.ready(next(it)), i), args.steps, device, args.top)
        print(f"== {args.method} ({args.profile}, {bench.device_label(device)}): forward per top-level module")
        for r in mods:
            print(f"  {r['module']:24s} {r['forward_ms_per_step']:9.2f} ms  {100 * r['share_of_forward']:5.1f} %")
    print(f"== top {args.top} operators by " + ("total CPU time" if args.data else "self device time") + " per step: device ms, share, CPU self / total ms")
    for r in ops:
        print(f"  {r['ms_per_step']:9.2f} ms {100 * r['share']:5.1f} %  cpu {r['cpu_ms_per_step']:7.2f} / {r['cpu_total_ms_per_step']:7.2f} ms  x{r['calls_per_step']:<5d} {r['op']}")
    if args.out:
        _write(mods, Path(f"{args.out}_modules.csv"))
        _write(ops, Path(f"{args.out}_ops.csv"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
