"""SSNet benchmark: parameters, GFLOPs per clip, and training-step time.

    python benchmarks/bench_ssnet.py                 # params + GFLOPs + CPU ms/step (quick sizes)
    python benchmarks/bench_ssnet.py --device cuda   # + paper configuration on the GPU (bf16 autocast)

* Parameters: built on the ``meta`` device (no memory), paper configuration (T=10, K=4, grey
  input, ResNet-50) and every variant.
* GFLOPs: ``torch.utils.flop_counter.FlopCounterMode`` over one clip (B=1, T=10, 224²) run on the
  ``meta`` device: shapes propagate, nothing is computed. It counts convolutions and matrix
  products (SDPA is decomposed into its two batched products on ``meta``, so the attention's
  QKᵀ and AV are included); BatchNorm, softmax, pooling and element-wise ops are not counted.
  One FLOP = one multiply or one add (a MAC is 2 FLOPs).
* Time: mean wall-clock ms per training step (forward, Eq. 7 loss, backward, Adam step) after
  warm-up. CPU: 96², T=10, ResNet-18, batch 8 (the quick profile) and ResNet-50, batch 2.
  ``--device cuda``: 224², T=10, ResNet-50, batch 8, bf16 autocast (the paper configuration).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from ssnet.models.ssnet import build_ssnet

PAPER = dict(frames=10, num_classes=4, in_channels=1, img_size=224, backbone="resnet50")
VARIANTS: dict[str, dict[str, Any]] = {
    "full (per_frame)": {},
    "full (shared)": {"attention": "shared"},
    "full (paired head)": {"refine_head": "paired"},
    "full (shared, paired head)": {"attention": "shared", "refine_head": "paired"},
    "row 1 static_only": {"use_motion": False, "fusion": "late", "refinement": False},
    "row 2 late_fusion": {"fusion": "late", "refinement": False},
    "row 3 motion_guided": {"use_static": False, "refinement": False},
    "row 4 no_refinement": {"refinement": False},
}


def count_params(**options: Any) -> int:
    """Parameters of SSNet built on the meta device."""
    with torch.device("meta"):
        model = build_ssnet(**{**PAPER, **options})
    return sum(p.numel() for p in model.parameters())


def count_flops(batch: int = 1, backward: bool = False, **options: Any) -> tuple[int, dict[str, int]]:
    """FLOPs of one forward (and backward) pass on the meta device; returns total and per top-level module."""
    cfg = {**PAPER, **options}
    with torch.device("meta"):
        model = build_ssnet(**cfg)
        x = torch.randn(batch, cfg["frames"], 1, cfg["img_size"], cfg["img_size"])
        target = torch.zeros(batch, cfg["img_size"], cfg["img_size"], dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        out = model(x)
        if backward:
            model.loss(out, target).backward()
    counts = counter.get_flop_counts()
    total = sum(counter.get_flop_counts()["Global"].values())
    parts: dict[str, int] = {}
    root = type(model).__name__
    for child, module in model.named_children():
        if module is None:
            continue
        if f"{root}.{child}" in counts:  # a plain module
            parts[child] = sum(counts[f"{root}.{child}"].values())
        else:  # a ModuleList: sum its entries
            parts[child] = sum(
                sum(v.values()) for k, v in counts.items() if k.startswith(f"{root}.{child}.") and k.count(".") == 2
            )
    return total, parts


def time_steps(device: str, batch: int, size: int, backbone: str, steps: int, warmup: int,
               bf16: bool = False, **options: Any) -> dict[str, float]:
    """Mean/min ms per training step on random data."""
    torch.manual_seed(0)
    model = build_ssnet(frames=10, img_size=size, backbone=backbone, **options).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.5, 0.99), weight_decay=3e-4)
    x = torch.randn(batch, 10, 1, size, size, device=device)
    y = torch.randint(0, 4, (batch, size, size), device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    times = []
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for i in range(warmup + steps):
        sync()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            out = model(x)
        loss = model.loss(out, y)
        loss.backward()
        opt.step()
        sync()
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    result = {"ms_mean": sum(times) / len(times), "ms_min": min(times), "loss": loss.item()}
    if device == "cuda":
        result["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--skip-cpu-timing", action="store_true", help="only parameters and FLOPs (and GPU timing)")
    parser.add_argument("--skip-resnet50-cpu", action="store_true")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    results: dict[str, Any] = {"torch": torch.__version__}

    print("== parameters (meta device; T=10, K=4, grey input, ResNet-50)")
    results["params"] = {}
    for name, opts in VARIANTS.items():
        n = count_params(**opts)
        results["params"][name] = n
        print(f"  {name:28s} {n:>13,d}")
    for t in (5, 15, 20, 30):
        n = count_params(frames=t)
        results["params"][f"full (per_frame) T={t}"] = n
        print(f"  {'full (per_frame) T=' + str(t):28s} {n:>13,d}")

    print("== GFLOPs per clip (FlopCounterMode on meta; B=1, T=10, 224², ResNet-50)")
    results["gflops"] = {}
    for name, opts in (("full (per_frame)", {}), ("full (shared)", {"attention": "shared"}),
                       ("row 4 no_refinement", {"refinement": False})):
        fwd, parts = count_flops(**opts)
        train, _ = count_flops(backward=True, **opts)
        results["gflops"][name] = {"forward": fwd / 1e9, "forward+backward": train / 1e9,
                                   "forward_by_module": {k: v / 1e9 for k, v in parts.items()}}
        print(f"  {name:22s} forward {fwd / 1e9:8.1f}  forward+backward {train / 1e9:8.1f}")
        print("    " + ", ".join(f"{k} {v / 1e9:.1f}" for k, v in parts.items()))

    if not args.skip_cpu_timing:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"== CPU ms per training step ({torch.get_num_threads()} threads, fp32, T=10, 96²; "
              f"1-min load average {load:.1f} on {os.cpu_count()} cores)")
        results["cpu"] = {"threads": torch.get_num_threads(), "load_average_1min": load}
        runs = [("resnet18 batch 8", 8, "resnet18")]
        if not args.skip_resnet50_cpu:
            runs.append(("resnet50 batch 2", 2, "resnet50"))
        for name, batch, backbone in runs:
            r = time_steps("cpu", batch, 96, backbone, args.steps, args.warmup)
            results["cpu"][name] = r
            print(f"  {name:18s} {r['ms_mean']:9.0f} ms/step (min {r['ms_min']:.0f})")

    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no GPU visible (GPU figures come only from a GPU)")
        print(f"== GPU ms per training step ({torch.cuda.get_device_name()}; 224², T=10, ResNet-50, batch 8, bf16)")
        results["cuda"] = {"device": torch.cuda.get_device_name()}
        for name, opts in (("per_frame", {}), ("shared", {"attention": "shared"})):
            r = time_steps("cuda", 8, 224, "resnet50", args.steps, args.warmup, bf16=True, **opts)
            results["cuda"][name] = r
            print(f"  {name:10s} {r['ms_mean']:8.1f} ms/step (min {r['ms_min']:.1f}), peak {r['peak_mem_gib']:.1f} GiB")
            torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
