"""Training-step benchmark of every registered method at its profile size, on the current device.

    python benchmarks/bench_train.py --profile quick                 # CPU: results/cpu-<n>core/bench_train.csv
    python benchmarks/bench_train.py --profile paper --steps 20      # GPU: results/<gpu>/bench_train.csv (+ sdpa_backends.csv)
    python benchmarks/bench_train.py --methods ssnet,unet --out my.csv
    python benchmarks/bench_train.py --markdown results/h200/bench_train.csv   # the README's table
    python benchmarks/bench_train.py --smoke --out /tmp/b.csv        # tiny sizes, 1 method, 2 steps (tests)

For each method (``ssnet.registry.names()``, or ``--methods``) the config is composed as
``ssnet train`` composes it (``model=NAME profile=P``), the model built with ``build_model`` and
wrapped in the engine's :class:`~ssnet.engine.module.SegmentationModule`; batches come from the
engine's path: :class:`~ssnet.data.sampling.StepBatchSampler` → DataLoader over an in-memory
:class:`~ssnet.data.dataset.CineDataset` (random clips at the profile's size, on the device) →
``on_after_batch_transfer`` (batched augmentation on the device) → ``training_step`` under the
run's precision (bf16 autocast on CUDA) → backward → optimiser and scheduler step.

Columns:

* ``step_ms``: median over ``--steps`` steps after ``--warmup`` of the training step (forward, loss,
  backward, optimiser), synchronised at both ends; ``step_ms_p90`` its 90th percentile.
* ``data_ms`` / ``data_wait_share``: time from the end of a step to the next batch being ready
  (DataLoader + on-device augmentation, synchronised), and its share of the loop's wall time. With
  the synchronisation this is an upper bound on a GPU: in training the host prepares the next batch
  while the device still runs the previous step. On a CPU nothing overlaps and this is the data share.
* ``wall_ms`` / ``data_wait_share_overlapped``: wall time per step of ``--steps`` more steps run as
  in training (no synchronisation inside the loop), and ``1 − mean step / wall_ms``: the share of the
  loop's wall time that the device was not running a step (data, Python and launch overhead). It is
  the difference of two separately timed loops, so on a busy machine it carries their noise.
* ``clips_per_s``: batch size / median (step + data) time.
* ``gflop_per_step``: ``torch.utils.flop_counter`` over one real training step (forward + backward;
  convolutions and matrix products, 1 MAC = 2 FLOPs); ``tflops``: that over the median step time;
  ``peak_tflops`` / ``peak_share``: the device's dense bf16 peak (table below; empty on CPU).
* ``peak_mem_mib``: CUDA ``max_memory_allocated`` over the timed steps; on CPU the process's peak resident set
  while this method ran (reset per method, ``ssnet/engine/memory.py``; it includes the interpreter and libraries).

On CUDA, ``sdpa_backends.csv`` beside the CSV lists every ``scaled_dot_product_attention`` call of a
training step (the module that makes it, q/k/v shapes and dtype), the backend the dispatcher picks,
and whether flash / memory-efficient / cuDNN / math attention accept it (each forced with
``torch.nn.attention.sdpa_kernel``, forward and backward).
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import math
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ssnet.engine.memory import peak_memory_mb, reset_peak_memory  # noqa: E402

# Dense (no sparsity) bf16 Tensor Core peaks, TFLOP/s. NVIDIA datasheets give the sparse figure
# ("1,979 TFLOPS with sparsity" for H100 SXM and H200: H100 datasheet, nvidia.com/en-us/data-center/h100;
# H200 datasheet, nvidia.com/en-us/data-center/h200); dense is half. A100: 312 (A100 datasheet, dense).
# PCIe/NVL H100 parts are lower (756 dense); matched first by the longer key.
PEAK_BF16_TFLOPS = {"H100 PCIe": 756.0, "H100 NVL": 835.0, "H100": 989.4, "H200": 989.4, "GH200": 989.4, "A100": 312.0}

COLUMNS = [
    "method", "profile", "device", "batch_size", "frames", "size", "precision", "compile", "channels_last", "deterministic",
    "steps", "step_ms", "step_ms_p90", "data_ms", "data_wait_share", "wall_ms", "data_wait_share_overlapped",
    "clips_per_s", "gflop_per_step", "tflops",
    "peak_tflops", "peak_share", "peak_mem_mib", "params", "torch", "error",
]
SMOKE = ["data.size=32", "data.frames=3", "train.batch_size=2", "data.augment=true"]


def device_label(device: torch.device) -> str:
    """Folder/column name of the device: ``cpu-<n>core`` or the GPU's model, e.g. ``h200``."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device).lower().replace("nvidia", "").strip()
        return re.sub(r"[^a-z0-9]+", "-", name).strip("-") or "cuda"
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"cpu-{n}core"


def peak_tflops(device: torch.device) -> float | None:
    """Dense bf16 peak of a known GPU (longest matching key), else ``None``."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):
        if key in name:
            return PEAK_BF16_TFLOPS[key]
    return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Bench:
    """One method's engine pieces: config, module, optimiser, data loader, precision context."""

    def __init__(self, name: str, profile: str, device: torch.device, overrides: list[str] | None = None,
                 n_scans: int = 32, seed: int = 0) -> None:
        from ssnet.data.dataset import CineDataset, ClipConfig, collate_batch
        from ssnet.engine.config import build_model, compose
        from ssnet.engine.module import SegmentationModule
        from ssnet.engine.train import clip_config, precision_for, prepare_model

        self.cfg = compose([f"model={name}", f"profile={profile}", *(overrides or [])])
        self.device = device
        self.name, self.profile = name, profile
        t = self.cfg.train
        self.batch_size = int(t.batch_size)
        torch.manual_seed(seed)
        model = build_model(self.cfg)
        self.params = sum(p.numel() for p in model.parameters())
        self.module = SegmentationModule(eager_prepared(self.cfg, model, prepare_model), self.cfg)
        self.module.to(device).train()
        opt = self.module.configure_optimizers()
        self.opt, self.sched = opt["optimizer"], opt["lr_scheduler"]["scheduler"]
        ccfg: ClipConfig = clip_config(self.cfg)
        g = torch.Generator().manual_seed(seed)
        frames = torch.randn(n_scans, ccfg.frames, 1, ccfg.size, ccfg.size, generator=g)
        labels = torch.randint(0, int(self.cfg.num_classes), (n_scans, ccfg.size, ccfg.size), generator=g)
        self.dataset = CineDataset.from_tensors(frames, labels, ccfg, augment=bool(self.cfg.data.augment))
        if device.type == "cuda":
            self.dataset.to(device, torch.float16 if t.get("data_fp16", False) else None)
        self.collate = collate_batch
        self.precision = precision_for(self.cfg) if device.type == "cuda" else "32-true"
        self.compiled = bool(t.get("compile", False))
        self.deterministic = set_determinism(bool(t.get("deterministic", False)))

    def autocast(self) -> Any:
        if "bf16" in self.precision:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        if "16" in self.precision:
            return torch.autocast(self.device.type, dtype=torch.float16)
        return contextlib.nullcontext()

    def loader(self, steps: int) -> Any:
        from ssnet.data.sampling import StepBatchSampler

        sampler = StepBatchSampler(len(self.dataset), self.batch_size, int(self.cfg.seed), steps)
        return torch.utils.data.DataLoader(self.dataset, batch_sampler=sampler, collate_fn=self.collate)

    def ready(self, batch: dict) -> dict:
        """What Lightning does between the loader and the step: transfer, then the module's augmentation."""
        batch = {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) and k != "aug_seed" else v
                 for k, v in batch.items()}
        return self.module.on_after_batch_transfer(batch, 0)

    def step(self, batch: dict, i: int) -> torch.Tensor:
        self.opt.zero_grad(set_to_none=True)
        with self.autocast():
            loss = self.module.training_step(batch, i)
        loss.backward()
        self.opt.step()
        self.sched.step()
        return loss

    def count_flops(self, batch: dict) -> float:
        """FLOPs of one real training step (forward + backward), ``torch.utils.flop_counter``."""
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            self.step(batch, 0)
        return float(counter.get_total_flops())


def set_determinism(on: bool) -> bool:
    """What Lightning's ``Trainer(deterministic=on)`` sets: deterministic kernels (an op without one raises),
    cuBLAS's fixed workspace; cuDNN autotuning stays off either way (PyTorch's default)."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on)
    return on


def eager_prepared(cfg: Any, model: torch.nn.Module, prepare_model: Any) -> torch.nn.Module:
    """channels_last now; ``compile`` later (after the FLOP count, which needs the eager model)."""
    from omegaconf import OmegaConf

    eager = OmegaConf.merge(cfg, {"train": {"compile": False}})
    return prepare_model(model, eager)


def measure(name: str, profile: str = "quick", steps: int = 10, warmup: int = 2, device: torch.device | None = None,
            overrides: list[str] | None = None, flops: bool = True) -> dict[str, Any]:
    """One CSV row for ``name`` (see the module docstring); ``error`` holds a one-line reason on failure."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    row: dict[str, Any] = {"method": name, "profile": profile, "device": device_label(device), "torch": torch.__version__}
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    try:
        reset_peak_memory(torch.device("cpu"))
        b = Bench(name, profile, device, overrides)
        row.update(batch_size=b.batch_size, frames=int(b.cfg.data.frames), size=int(b.cfg.data.size),
                   precision=b.precision, compile=b.compiled, deterministic=b.deterministic, channels_last=bool(b.cfg.train.get("channels_last", False)),
                   steps=steps, params=b.params)
        it = iter(b.loader(warmup + 2 * steps + 2))
        first = b.ready(next(it))
        gflop = b.count_flops(first) / 1e9 if flops else float("nan")
        if b.compiled:  # compile after the (eager) FLOP count; the compilation step is not timed
            b.module.model.compile()
            b.step(b.ready(next(it)), 0)
        if device.type == "cuda":
            reset_peak_memory(device)
        data_s, step_s = [], []
        _sync(device)
        end = time.perf_counter()
        for i in range(warmup + steps):
            batch = b.ready(next(it))
            _sync(device)
            ready = time.perf_counter()
            b.step(batch, i + 1)
            _sync(device)
            done = time.perf_counter()
            if i >= warmup:
                data_s.append(ready - end)
                step_s.append(done - ready)
            end = done
        # the same loop without synchronisation, as in training: the host prepares the next batch while the
        # device runs the step; wall time not spent in the (median) step is time the loop waited
        start = time.perf_counter()
        for i in range(steps):
            b.step(b.ready(next(it)), warmup + steps + i + 1)
        _sync(device)
        wall_ms = 1e3 * (time.perf_counter() - start) / steps
        step_ms = 1e3 * statistics.median(step_s)
        data_ms = 1e3 * statistics.median(data_s)
        peak = peak_tflops(device)
        tflops = gflop / step_ms if flops else float("nan")  # GFLOP / ms = TFLOP/s
        row.update(
            step_ms=round(step_ms, 2), step_ms_p90=round(1e3 * sorted(step_s)[math.ceil(0.9 * len(step_s)) - 1], 2),
            data_ms=round(data_ms, 2), data_wait_share=round(sum(data_s) / (sum(data_s) + sum(step_s)), 4),
            wall_ms=round(wall_ms, 2), data_wait_share_overlapped=round(max(0.0, 1 - 1e3 * statistics.mean(step_s) / wall_ms), 4),
            clips_per_s=round(b.batch_size / ((step_ms + data_ms) / 1e3), 2),
            gflop_per_step=round(gflop, 2), tflops=round(tflops, 3),
            peak_tflops=peak if peak else "", peak_share=round(tflops / peak, 4) if peak and not math.isnan(tflops) else "",
            peak_mem_mib=round(peak_memory_mb(device), 1),
            error="",
        )
        del b
    except Exception as exc:  # one method that cannot run must not hide the others
        row["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300]
    torch.use_deterministic_algorithms(deterministic_before)  # the caller's setting (tests run in one process)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def sdpa_report(name: str = "ssnet", profile: str = "paper", overrides: list[str] | None = None,
                device: torch.device | None = None) -> list[dict[str, Any]]:
    """Every SDPA call of one training step (CUDA by default): calling module, shapes, picked backend, backends that accept it."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    device = device or torch.device("cuda")
    b = Bench(name, profile, device, overrides)
    batch = b.ready(next(iter(b.loader(1))))
    stack: list[str] = []
    handles = []

    def enter(name: str) -> Any:
        def hook(module: Any, args: Any) -> None:
            stack.append(name)
        return hook

    def leave(module: Any, args: Any, output: Any) -> None:  # returns None: the output is unchanged
        stack.pop()

    for mod_name, mod in b.module.model.named_modules():
        handles.append(mod.register_forward_pre_hook(enter(mod_name or type(mod).__name__)))
        handles.append(mod.register_forward_hook(leave))
    calls: list[dict[str, Any]] = []
    original = F.scaled_dot_product_attention
    backends = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
                "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}

    def probe(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        row: dict[str, Any] = {"method": name, "stage": stack[-1] if stack else "?", "call": len(calls),
                               "q": "x".join(map(str, q.shape)), "k": "x".join(map(str, k.shape)), "dtype": str(q.dtype).replace("torch.", "")}
        try:
            choice = torch._fused_sdp_choice(q, k, v, *args, **kwargs)
            row["picked"] = next((n for n, be in backends.items() if int(be) == int(choice)), str(choice))
        except Exception as exc:  # private API: report rather than fail
            row["picked"] = f"unknown ({type(exc).__name__})"
        for label, backend in backends.items():
            qq, kk, vv = (x.detach().clone().requires_grad_(True) for x in (q, k, v))
            try:
                with sdpa_kernel([backend]):
                    original(qq, kk, vv, *args, **kwargs).float().sum().backward()
                row[label] = "ok"
            except Exception as exc:
                row[label] = f"no ({type(exc).__name__})"
        calls.append(row)
        return original(q, k, v, *args, **kwargs)

    F.scaled_dot_product_attention = probe
    try:
        b.step(batch, 0)
    finally:
        F.scaled_dot_product_attention = original
        for h in handles:
            h.remove()
    return calls


def write_csv(rows: list[dict[str, Any]], path: Path, columns: list[str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in columns})


def markdown(path: Path) -> str:
    """The README's performance table from a ``bench_train.csv``."""
    with Path(path).open() as f:
        rows = list(csv.DictReader(f))
    head = ("| method | device | profile | batch × T × size | step ms (median) | clips/s | GFLOP/step | TFLOP/s "
            "| % of bf16 peak | peak memory MiB | data wait: synced bound (overlapped) |")
    lines = [head, "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r.get("error"):
            lines.append(f"| {r['method']} | {r['device']} | {r['profile']} | failed: {r['error'][:80]} |||||||| |")
            continue
        share = f"{100 * float(r['peak_share']):.1f} %" if r.get("peak_share") else "–"
        wait = f"{100 * float(r['data_wait_share']):.1f} %"
        if r.get("data_wait_share_overlapped"):
            wait += f" ({100 * float(r['data_wait_share_overlapped']):.1f} %)"
        lines.append(
            f"| {r['method']} | {r['device']} | {r['profile']} | {r['batch_size']} × {r['frames']} × {r['size']}² "
            f"| {float(r['step_ms']):.1f} | {float(r['clips_per_s']):.1f} | {float(r['gflop_per_step']):.1f} "
            f"| {float(r['tflops']):.3g} | {share} | {float(r['peak_mem_mib']):.0f} | {wait} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="quick", help="quick | paper | smoke (default quick)")
    parser.add_argument("--methods", help="comma-separated registered names (default: all)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per method (default 10)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", help="CSV path (default results/<device>/bench_train.csv)")
    parser.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when visible")
    parser.add_argument("--override", action="append", default=[], help="extra Hydra override, e.g. train.compile=true")
    parser.add_argument("--no-sdpa", action="store_true", help="CUDA: skip sdpa_backends.csv")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one method, 2 steps (tests; no timing meaning)")
    parser.add_argument("--markdown", metavar="CSV", help="print the Markdown table of a bench_train.csv and exit")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(Path(args.markdown)))
        return 0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before cuBLAS starts (deterministic runs need it)
    from ssnet import registry
    from ssnet.engine.train import quiet_lightning

    quiet_lightning()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    overrides = list(args.override)
    names = args.methods.split(",") if args.methods else registry.names()
    if args.smoke:
        names, args.steps, args.warmup, overrides = names[:1] if args.methods else ["unet"], 2, 0, [*SMOKE, *overrides]
        args.profile = "smoke"
    out = Path(args.out) if args.out else ROOT / "results" / device_label(device) / "bench_train.csv"
    rows = []
    for name in names:
        row = measure(name, args.profile, args.steps, args.warmup, device, overrides)
        rows.append(row)
        print(f"{name:24s} " + (f"failed: {row['error']}" if row["error"] else
              f"{row['step_ms']:9.1f} ms/step  {row['clips_per_s']:7.1f} clips/s  {row['tflops']:7.3f} TFLOP/s  "
              f"data wait {100 * row['data_wait_share']:.1f} % (overlapped {100 * row['data_wait_share_overlapped']:.1f} %)  peak {row['peak_mem_mib']:.0f} MiB"), flush=True)
        write_csv(rows, out, COLUMNS)  # after every method: a crash keeps the rows so far
    if device.type == "cuda" and not args.no_sdpa and "ssnet" in names:
        try:
            report = sdpa_report("ssnet", args.profile, overrides)
            write_csv(report, out.parent / "sdpa_backends.csv")
            for r in report:
                print(f"sdpa {r['stage']}: q {r['q']} {r['dtype']} -> {r['picked']} "
                      f"(flash {r['flash']}, efficient {r['efficient']}, cudnn {r['cudnn']}, math {r['math']})")
        except Exception as exc:
            print(f"sdpa report failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
