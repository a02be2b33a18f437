"""Model registry: ``register(name)`` decorates a builder; ``get(name)`` returns its entry.

Every model follows one contract:

* builder signature ``build(*, frames: int, num_classes: int = 4, in_channels: int = 1,
  img_size: int = 224, **options) -> nn.Module``;
* ``model(frames)`` with frames ``(B, T, 1, H, W)`` float returns either logits
  ``(B, K, H, W)`` or a :class:`ssnet.models.base.SegOutput` (logits plus auxiliary outputs);
* a model may define ``loss(output, target) -> Tensor`` (target ``(B, H, W)`` int64);
  otherwise the engine's multiclass Dice loss is used.

Baselines live one per file in ``baselines/`` and are discovered automatically.
"""
from __future__ import annotations

import fnmatch
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch.nn as nn


@dataclass(frozen=True)
class ModelEntry:
    """A registered model builder and what the suite needs to know about it."""

    name: str
    build: Callable[..., nn.Module]
    kind: str = "video"  # "image" or "video": the Table 1 column
    min_frames: int = 1
    size_divisor: int = 1  # image sides must be divisible by this (e.g. 16 for ViT patches, 32 for Swin)
    test_config: dict[str, Any] = field(default_factory=dict)  # tiny CPU config for tests
    paper_config: dict[str, Any] = field(default_factory=dict)  # options for the paper's configuration
    display_name: str | None = None  # name in tables, e.g. "UNet++"

    @property
    def label(self) -> str:
        return self.display_name or self.name


_MODELS: dict[str, ModelEntry] = {}
_FAILED: dict[str, str] = {}  # module -> one-line reason it could not be imported
_discovered = False


def register(
    name: str,
    *,
    kind: str = "video",
    min_frames: int = 1,
    size_divisor: int = 1,
    test_config: dict[str, Any] | None = None,
    paper_config: dict[str, Any] | None = None,
    display_name: str | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a model builder under ``name``. A duplicate name is an error."""
    if kind not in ("image", "video"):
        raise ValueError(f"model {name!r}: kind must be 'image' or 'video', got {kind!r}")

    def add(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _MODELS:
            raise ValueError(f"duplicate model name {name!r}")
        _MODELS[name] = ModelEntry(
            name, fn, kind, min_frames, int(size_divisor), dict(test_config or {}), dict(paper_config or {}), display_name
        )
        return fn

    return add


def discover() -> None:
    """Import ``ssnet.models`` and every module of ``baselines`` (idempotent).

    A module that fails to import (any exception) does not stop discovery: it is recorded in
    :func:`failures` with a one-line reason, and every other model stays available.
    """
    global _discovered
    if _discovered:
        return
    for package_name in ("ssnet.models", "baselines"):
        package = importlib.import_module(package_name)
        for info in pkgutil.iter_modules(package.__path__):
            if info.name.startswith("_"):
                continue
            module = f"{package_name}.{info.name}"
            try:
                importlib.import_module(module)
            except Exception as exc:  # a broken method must not hide the others
                _FAILED[module] = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    _discovered = True


def failures() -> dict[str, str]:
    """Model modules that failed to import, with a one-line reason each."""
    discover()
    return dict(_FAILED)


def get(name: str) -> ModelEntry:
    """Return the entry for ``name``; an unknown name raises ``KeyError`` listing every name."""
    discover()
    try:
        return _MODELS[name]
    except KeyError:
        broken = [m for m in _FAILED if m.rsplit(".", 1)[-1] == name]
        if broken:
            raise KeyError(f"model {name!r} failed to import ({broken[0]}: {_FAILED[broken[0]]})") from None
        raise KeyError(f"unknown model {name!r}; available: {', '.join(sorted(_MODELS))}") from None


def names(pattern: str = "*") -> list[str]:
    """Sorted registered names matching the ``fnmatch`` ``pattern``."""
    discover()
    return sorted(n for n in _MODELS if fnmatch.fnmatchcase(n, pattern))


def check_geometry(entry: ModelEntry, frames: int | None = None, img_size: int | None = None) -> None:
    """Raise ``ValueError`` (one line) when ``frames`` or ``img_size`` do not suit ``entry``."""
    if frames is not None and frames < entry.min_frames:
        raise ValueError(f"model {entry.name!r} needs at least {entry.min_frames} frames, got {frames}")
    if img_size is not None and img_size % entry.size_divisor:
        raise ValueError(
            f"model {entry.name!r} needs image sides divisible by {entry.size_divisor}, got {img_size} "
            f"(set data.size to a multiple of {entry.size_divisor})"
        )


def build(name: str, **kwargs: Any) -> nn.Module:
    """Build model ``name`` with ``kwargs`` after checking frames and image size against its declaration."""
    entry = get(name)
    check_geometry(entry, kwargs.get("frames"), kwargs.get("img_size"))
    try:
        return entry.build(**kwargs)
    except (TypeError, ValueError):
        raise
    except Exception as exc:  # a method that cannot be built names itself in one line
        raise RuntimeError(f"model {name!r} failed to build: {type(exc).__name__}: {' '.join(str(exc).split())}") from exc
