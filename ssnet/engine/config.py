"""Hydra composition (compose API) and helpers shared by ``ssnet train`` and reproduce."""
from __future__ import annotations

import hashlib
import inspect
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ssnet.errors import SsnetError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def compose(overrides: list[str] | None = None) -> DictConfig:
    """Compose ``configs/config.yaml`` with Hydra ``overrides``; unknown keys/groups give one clear error."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = list(overrides or [])
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = hydra_compose("config", overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as exc:
        msg = " ".join(str(exc).split())
        raise SsnetError(f"{CONFIG_DIR}: bad config override ({msg})") from exc
    model_choice = cfg.hydra.runtime.choices.get("model")
    profile_choice = cfg.hydra.runtime.choices.get("profile")
    with_meta = OmegaConf.to_container(cfg, resolve=False)
    with_meta.pop("hydra", None)
    out = OmegaConf.create(with_meta)
    OmegaConf.update(out, "model.key", model_choice, force_add=True)
    OmegaConf.update(out, "profile.name", profile_choice if out.profile.get("name") is None else out.profile.name, force_add=True)
    try:
        OmegaConf.resolve(out)
    except OmegaConfBaseException as exc:
        raise SsnetError(f"{CONFIG_DIR}: cannot resolve config ({' '.join(str(exc).split())})") from exc
    return out


def config_hash(cfg: DictConfig) -> str:
    """12-hex-digit hash of the resolved config, excluding where runs are stored."""
    data = OmegaConf.to_container(cfg, resolve=True)
    for key in ("run_root", "run_name"):
        data.pop(key, None)
    text = OmegaConf.to_yaml(OmegaConf.create(data), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def model_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """Builder keyword arguments: data geometry, model options, and profile hints the builder accepts."""
    from ssnet import registry

    entry = registry.get(cfg.model.name)
    kwargs: dict[str, Any] = {
        "frames": int(cfg.data.frames),
        "num_classes": int(cfg.num_classes),
        "in_channels": 1,
        "img_size": int(cfg.data.size),
    }
    params = inspect.signature(entry.build).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for key, value in (cfg.profile.get("model_hints") or {}).items():
        if accepts_any or key in params:
            kwargs[key] = value
    options = cfg.model.get("options")
    options = OmegaConf.to_container(options, resolve=True) if options else {}  # a model config may have none
    unknown = [k for k in options if not accepts_any and k not in params]
    if unknown:
        raise SsnetError(
            f"configs/model/{cfg.model.get('key', cfg.model.name)}.yaml: unknown option(s) {', '.join(unknown)} for model "
            f"{cfg.model.name!r}; accepted: {', '.join(k for k in params if k not in kwargs)}"
        )
    kwargs.update(options)
    return kwargs


def build_model(cfg: DictConfig):
    """Build the model named by ``cfg.model.name`` with :func:`model_kwargs`."""
    from ssnet import registry

    try:
        return registry.build(cfg.model.name, **model_kwargs(cfg))
    except KeyError as exc:
        raise SsnetError(f"model={cfg.model.name}: {exc.args[0]}") from None
    except (ValueError, RuntimeError) as exc:
        raise SsnetError(f"model={cfg.model.name}: {exc}") from None
