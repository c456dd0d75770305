"""Task registry: tasks declare themselves next to their model; this module finds and lists them.

A task (`TaskSpec`) bundles a backbone builder, its injection points, input geometry,
normalization, labels, output head (post-processing, fidelity, distillation), output schema and
where its weights are found (`WeightsLookup`). Model modules declare tasks with `declare` (or
the `task` decorator on their builder); nothing here names a model. The registry imports every
module of the `nvcodec.models` package once, on first use, then the entry points of the
``nvcodec.tasks`` group, so that another installed package adds tasks without touching nvcodec
(an entry point names a module that declares tasks, a `TaskSpec`, or a callable returning some).

The task name is looked up once, where a call enters the library (the CLI, `attach`, `infer`,
`build_runtime`, `resolve_weights` given a name: see `resolve_task`); everything below takes
the `TaskSpec`. ``build(..., tiny=True)`` and ``geometry(..., tiny=True)`` give tiny
random-sized test versions; they never stand in for the real models.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import pkgutil
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from nvcodec.errors import UsageError
from nvcodec.models.base import InjectableBackbone, calibrate_bn
from nvcodec.models.geometry import Geometry, preprocess
from nvcodec.models.heads import (  # noqa: F401 - re-exported for the old `nvcodec.tasks.registry` names
    BOX_L1_SCALE,
    DEFAULT_DETECTION_THRESHOLD,
    DEFAULT_TOP_K,
    Head,
    classification_distill,
    classification_fidelity,
    detection_distill,
    detection_fidelity,
)
from nvcodec.models.sampling import ClipSampling
from nvcodec.models.weights import WeightsLookup, WeightsSource, locate_weights
from nvcodec.progress import ProgressCallback

ENTRY_POINT_GROUP = "nvcodec.tasks"
"""Entry-point group through which other packages add tasks."""

Builder = Callable[[WeightsSource, "torch.device | str", bool], InjectableBackbone]
"""build(weights_source, device, tiny) -> the backbone with its head, frozen, in eval mode."""


@dataclass(frozen=True)
class TaskSpec:
    """Everything needed to run one task from pixels or from injected activations.

    `postprocess` returns one list per frame (per window for clip tasks, `clip` set): classification -> top-k
    ``{"label", "index", "score"}``; detection -> ``{"label", "index", "score", "box"}``
    with ``box = [x0, y0, x1, y1]`` in original-frame pixels; caption -> one ``{"caption", "tokens"}``.
    """

    name: str
    description: str
    output_type: str
    backbone: str
    injection_points: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    labels: tuple[str, ...]
    output_schema: dict[str, Any]
    fidelity_doc: str
    _geometry: Callable[[Sequence[int]], Geometry]
    _tiny_geometry: Callable[[Sequence[int]], Geometry]
    _builder: Builder
    _postprocess: Callable[..., list[list[dict[str, Any]]]]
    _fidelity: Callable[[Any, Any], float]
    _distill: Callable[[Any, Any], Tensor]
    weights: WeightsLookup
    default_options: dict[str, Any] = field(default_factory=dict)
    distill_context: Callable[[Any], dict[str, Any]] | None = None
    """Extra tail arguments during distillation, from the teacher's raw outputs (captions: teacher forcing)."""
    _relabel: Callable[[Any, tuple[str, ...]], None] | None = None
    """Zero-shot tasks: points the built model at `labels` (see `with_labels`); None for a fixed label set."""
    clip: ClipSampling | None = None
    """Set for tasks whose unit is a window of frames (see `nvcodec.route.clips`); None: one frame."""
    rank: int = 100
    """Position in listings (`nvcodec tasks`, the README's table): lower first, then by name."""
    docs: tuple[str, str, str] | None = None
    """README table cells: (output, backbone, injection points); None: derived from the fields above."""
    declared_in: str = ""
    """Module that declared the task."""

    @property
    def zero_shot(self) -> bool:
        """True when the label set can be chosen (``--labels FILE``)."""
        return self._relabel is not None

    def with_labels(self, labels: Sequence[str]) -> TaskSpec:
        """This zero-shot task over another label set; UsageError for tasks with a fixed one."""
        if self._relabel is None:
            raise UsageError(f"task {self.name!r} has a fixed label set; --labels applies to zero-shot tasks")
        if not labels:
            raise UsageError("the label set is empty")
        return replace(self, labels=tuple(labels))
    clip: ClipSampling | None = None
    """Set for tasks whose unit is a window of frames (see `nvcodec.route.clips`); None: one frame."""

    def geometry(self, *frame_hw: int | Sequence[int], tiny: bool = False) -> Geometry:
        """Input geometry for frames of size H x W: ``geometry((H, W))`` or ``geometry(H, W)``.

        `tiny` gives the small geometry used with tiny test models.
        """
        hw = frame_hw[0] if len(frame_hw) == 1 else frame_hw
        if not isinstance(hw, Sequence) or len(hw) != 2:
            raise UsageError(f"frame size must be (H, W), got {frame_hw!r}")
        return (self._tiny_geometry if tiny else self._geometry)(hw)  # type: ignore[arg-type]

    def resolve_weights(self, weights: str | None, **kwargs: Any) -> WeightsSource:
        """Locate weights for this task (`nvcodec.models.weights.locate_weights` with its lookup; no name lookup)."""
        return locate_weights(self.name, self.weights, weights, **kwargs)

    def build(
        self, weights_source: WeightsSource, device: torch.device | str = "cpu", tiny: bool = False
    ) -> InjectableBackbone:
        """Backbone with head, loaded from `weights_source`, in eval mode with frozen parameters.

        `tiny` builds the small random-architecture test model instead of the real one.
        A random ResNet source leaves BN statistics for the caller to calibrate.
        """
        if weights_source.task != self.name:
            raise UsageError(f"weights resolved for task {weights_source.task!r} cannot build task {self.name!r}")
        model = self._builder(weights_source, device, tiny)
        if self._relabel is not None:
            self._relabel(model, self.labels)
        return model

    def preprocess(
        self, frames: Tensor | np.ndarray, geometry: Geometry, device: torch.device | str | None = None
    ) -> Tensor:
        """Frames -> normalized backbone input with this task's mean/std."""
        return preprocess(frames, geometry, self.mean, self.std, device=device)

    def postprocess(
        self, raw: Any, geometry: Geometry, frame_hw: Sequence[int] | None = None, **opts: Any
    ) -> list[list[dict[str, Any]]]:
        """Raw backbone output -> per-frame JSON-ready results (see the class docstring).

        Pass ``model=`` (the built backbone) for heads that need it: captions are decoded by its tokenizer.
        """
        merged = {**self.default_options, **opts}
        return self._postprocess(self, raw, geometry, frame_hw, **merged)

    def calibrate(self, model: InjectableBackbone, batches: Iterable[Tensor]) -> int:
        """Re-estimate BN statistics of a randomly initialized backbone from preprocessed batches."""
        return calibrate_bn(model, batches)

    def fidelity(self, raw_adapter: Any, raw_pixel: Any) -> float:
        """How well adapter-path outputs match the pixel path (1 = identical); see `fidelity_doc`."""
        return float(self._fidelity(raw_adapter, raw_pixel))

    def distill_loss(self, raw_student: Any, raw_teacher: Any) -> Tensor:
        """Differentiable distillation loss of student outputs toward teacher outputs (0 when equal)."""
        return self._distill(raw_student, raw_teacher)

    def concat_raw(self, raws: Sequence[Any]) -> Any:
        """Concatenate raw outputs of several batches along the frame axis."""
        if not raws:
            raise UsageError("nothing to concatenate")
        if isinstance(raws[0], dict):
            return {k: torch.cat([r[k] for r in raws]) for k in raws[0]}
        return torch.cat(list(raws))

    def describe(self) -> dict[str, Any]:
        """Description for `nvcodec tasks` listings (same as `to_dict`)."""
        return self.to_dict()

    def readme_row(self) -> str:
        """This task's row of the README's task table (Markdown)."""
        output, backbone, points = self.docs or (self.output_type, self.backbone, ", ".join(self.injection_points))
        if self.default_options.get("threshold") is not None:
            output = f"{output}; score threshold {self.default_options['threshold']:g} unless `--threshold`"
        return f"| `{self.name}` | {output} | {backbone} | {points} |"

    def to_dict(self) -> dict[str, Any]:
        """Description for `nvcodec tasks` style listings."""
        return {
            "name": self.name,
            "description": self.description,
            "output_type": self.output_type,
            "backbone": self.backbone,
            "injection_points": list(self.injection_points),
            "mean": list(self.mean),
            "std": list(self.std),
            "output_schema": self.output_schema,
            "fidelity": self.fidelity_doc,
            "options": dict(self.default_options),
            **({"clip": self.clip.to_dict()} if self.clip is not None else {}),
        }


_TASKS: dict[str, TaskSpec] = {}
_lock = threading.RLock()
_discovered = False


def register(spec: TaskSpec) -> TaskSpec:
    """Add `spec` to the registry (a module declaring it again, e.g. on reload, replaces its own entry)."""
    with _lock:
        old = _TASKS.get(spec.name)
        if old is not None and old.declared_in != spec.declared_in:
            raise UsageError(f"task {spec.name!r} is declared twice: in {old.declared_in} and in {spec.declared_in}")
        _TASKS[spec.name] = spec
    return spec


def declare(name: str, *, head: Head, builder: Builder, description: str, backbone: str,
            injection_points: Sequence[str], mean: Sequence[float], std: Sequence[float],
            geometry: Callable[[Sequence[int]], Geometry], weights: WeightsLookup,
            tiny_geometry: Callable[[Sequence[int]], Geometry] | None = None, labels: Sequence[str] = (),
            output_schema: dict[str, Any] | None = None, clip: ClipSampling | None = None,
            relabel: Callable[[Any, tuple[str, ...]], None] | None = None, rank: int = 100,
            docs: tuple[str, str, str] | None = None, declared_in: str | None = None) -> TaskSpec:
    """Declare and register a task; call it at module level in the model's module.

    `head`: the output type (`nvcodec.models.heads.CLASSIFICATION`, `DETECTION`, or
    `nvcodec.models.caption.HEAD`); `geometry(hw)` maps a frame size (H, W) to the backbone's input
    geometry (`tiny_geometry` for the tiny test model, default the same); `weights`: where weights
    are found when ``--weights`` is not given; `labels`: class names by output index; `clip`: set
    for tasks whose unit is a window of frames; `relabel(model, labels)`: set for zero-shot tasks;
    `docs`: the README table cells (output, backbone, injection points).
    """
    module = declared_in or sys._getframe(1).f_globals.get("__name__", "")
    spec = TaskSpec(
        name=name, description=description, output_type=head.output_type, backbone=backbone,
        injection_points=tuple(injection_points), mean=tuple(mean), std=tuple(std),  # type: ignore[arg-type]
        labels=tuple(labels), output_schema=output_schema or {}, fidelity_doc=head.fidelity_doc,
        _geometry=geometry, _tiny_geometry=tiny_geometry or geometry, _builder=builder,
        _postprocess=head.postprocess, _fidelity=head.fidelity, _distill=head.distill, weights=weights,
        default_options=dict(head.options), distill_context=head.distill_context, _relabel=relabel, clip=clip,
        rank=rank, docs=docs, declared_in=module,
    )
    return register(spec)


def task(name: str, **fields: Any) -> Callable[[Builder], Builder]:
    """Decorator form of `declare` for a builder function: ``@task("my_task", head=CLASSIFICATION, ...)``."""

    def wrap(builder: Builder) -> Builder:
        declare(name, builder=builder, declared_in=getattr(builder, "__module__", ""), **fields)
        return builder

    return wrap


def _load_entry_point(ep: importlib.metadata.EntryPoint) -> None:
    obj = ep.load()
    if isinstance(obj, TaskSpec):
        register(obj)
    elif callable(obj) and not isinstance(obj, type(sys)):
        for spec in obj() or ():
            register(spec)


def discover() -> None:
    """Import every module of `nvcodec.models` and the ``nvcodec.tasks`` entry points (once per process).

    ``NVCODEC_NO_PLUGINS=1`` skips the entry points. A plugin that fails to load is skipped with a warning.
    """
    global _discovered
    with _lock:
        if _discovered:
            return
        _discovered = True
        package = sys.modules[__package__]
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            importlib.import_module(f"{__package__}.{info.name}")
        if os.environ.get("NVCODEC_NO_PLUGINS", "").strip().lower() in ("1", "true", "yes", "on"):
            return
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                _load_entry_point(ep)
            except Exception as exc:  # a broken plugin must not take the built-in tasks down with it
                warnings.warn(f"nvcodec: task plugin {ep.name!r} ({ep.value}) not loaded: "
                              f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=2)


def _registry() -> dict[str, TaskSpec]:
    discover()
    return _TASKS


def list_tasks() -> list[TaskSpec]:
    """All registered tasks, in listing order (`TaskSpec.rank`, then name)."""
    return sorted(_registry().values(), key=lambda t: (t.rank, t.name))


def task_names() -> list[str]:
    """Names of all registered tasks, in listing order."""
    return [t.name for t in list_tasks()]


def get_task(name: str) -> TaskSpec:
    """The task called `name`; UsageError listing the known tasks otherwise.

    The one place a task name is looked up: callers resolve once at their entry (`resolve_task`).
    """
    try:
        return _registry()[name]
    except (KeyError, TypeError):
        raise UsageError(f"unknown task {name!r}; known tasks: {', '.join(task_names())}") from None


def resolve_task(task: str | TaskSpec) -> TaskSpec:
    """`task` itself when it is a `TaskSpec`, else the registered task of that name (see `get_task`)."""
    return task if isinstance(task, TaskSpec) else get_task(task)


def resolve_weights(
    task: str | TaskSpec,
    weights: str | os.PathLike[str] | None,
    *,
    cache_dirs: Sequence[str | os.PathLike[str]] | None = None,
    allow_download: bool = True,
    progress: ProgressCallback | None = None,
) -> WeightsSource:
    """Locate weights for a task (a name or its spec): see `nvcodec.models.weights.locate_weights`.

    Raises WeightsError (listing every place tried) when nothing usable is found.
    """
    spec = resolve_task(task)
    return locate_weights(spec.name, spec.weights, weights, cache_dirs=cache_dirs, allow_download=allow_download,
                          progress=progress)


def readme_table() -> str:
    """The README's task table (Markdown), from the declarations."""
    lines = ["| task | output | backbone | injection points (stride) |", "|---|---|---|---|"]
    return "\n".join(lines + [t.readme_row() for t in list_tasks()])


def zero_shot_names() -> list[str]:
    """Names of the zero-shot tasks (``--labels FILE`` applies to them)."""
    return [t.name for t in list_tasks() if t.zero_shot]
