"""Deprecated import paths: the old flat ``nvcodec.tasks`` package, split by what its parts are.

``nvcodec.tasks.X`` is the same module object as its new home (so attributes read and patched
through either name are shared):

- backbones, their weights, task declarations and the registry: `nvcodec.models`
  (``nvcodec.tasks.backbone`` is ``nvcodec.models.base``);
- adapters, clip windows, building and running routes: `nvcodec.route`;
- choosing and training routes (selection scores, attach, tune): `nvcodec.adapt`.

``nvcodec.tasks.weights`` is `nvcodec.models.weights` plus `nvcodec.models.registry.resolve_weights`
(the task-name lookup lives with the registry). New code imports the new paths.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from typing import Any

MOVED: dict[str, str] = {
    **{name: f"nvcodec.models.{name}" for name in (
        "hf", "bpe", "tokens", "labels", "geometry", "agreement", "caption", "registry",
        "efficientnet", "resnet", "detr", "vit", "blip", "clip", "video_resnet")},
    "backbone": "nvcodec.models.base",
    **{name: f"nvcodec.route.{name}" for name in ("adapter", "clips", "runtime", "flops", "infer")},
    **{name: f"nvcodec.adapt.{name}" for name in ("cka", "attach", "clip_attach", "tune")},
}
"""Old submodule name -> the module that now holds it."""


def _weights_module() -> types.ModuleType:
    weights = importlib.import_module("nvcodec.models.weights")
    registry = importlib.import_module("nvcodec.models.registry")
    module = types.ModuleType(__name__ + ".weights", weights.__doc__)
    module.__dict__.update({k: v for k, v in vars(weights).items() if not k.startswith("__")})
    module.resolve_weights = registry.resolve_weights  # type: ignore[attr-defined]
    return module


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``nvcodec.tasks.X`` for the names in MOVED and hands back the module that holds X now."""

    def __init__(self) -> None:
        self._home_specs: dict[str, importlib.machinery.ModuleSpec] = {}

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        prefix, _, name = fullname.rpartition(".")
        if prefix != __name__ or (name not in MOVED and name != "weights"):
            return None
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        name = spec.name.rpartition(".")[2]
        if name == "weights":
            return _weights_module()
        module = importlib.import_module(MOVED[name])
        self._home_specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        # The import system stamped the alias spec on the moved module; give it its own back.
        home = self._home_specs.pop(module.__spec__.name, None) if module.__spec__ is not None else None
        if home is not None:
            module.__spec__ = home


if not any(isinstance(f, _Alias) for f in sys.meta_path):
    sys.meta_path.insert(0, _Alias())
