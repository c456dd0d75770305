"""Where task weights come from: ``--weights PATH|ID|random`` or the places each task names.

`locate_weights` only locates (and, when allowed, downloads) weights and returns a
`WeightsSource`; the task's ``build`` loads them. Where a task looks when no ``--weights`` is
given lives with the task, as its `WeightsLookup` (see the model modules: ``resnet``,
``detr``, ``efficientnet``); this module holds the shared search helpers (torch hub cache,
Hugging Face cache, downloads). `nvcodec.models.registry.resolve_weights` takes a task name or spec.

Downloads are skipped when ``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE`` or
``NVCODEC_OFFLINE`` is set, when ``allow_download=False``, or when the host does not
answer within a few seconds. When nothing is found, `WeightsError` lists every place
that was tried and how to supply weights.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import socket
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import Tensor, nn

from nvcodec.errors import WeightsError
from nvcodec.progress import ProgressCallback, emit

WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt", ".pyth")
RANDOM = "random"

CONNECT_TIMEOUT_S = 3.0
READ_TIMEOUT_S = 30.0
_OFFLINE_VARS = ("NVCODEC_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")

HOW_TO_SUPPLY = (
    "Supply weights with --weights PATH (a .pth/.pt/.safetensors state dict, or a Hugging Face "
    "model directory), --weights MODEL_ID (a Hugging Face model id, optionally ID@REVISION), or "
    "--weights random for an untrained backbone (its outputs are meaningless and marked random)."
)


@dataclass(frozen=True)
class WeightsSource:
    """Located task weights.

    `kind`: ``"file"`` (a state dict file), ``"dir"`` (a Hugging Face model directory or
    snapshot) or ``"random"``; `origin`: where it came from, for messages and provenance.
    """

    task: str
    kind: str
    path: Path | None = None
    origin: str = ""
    repo_id: str | None = None
    revision: str | None = None

    @property
    def random(self) -> bool:
        """True when the backbone is randomly initialized (no trained weights)."""
        return self.kind == RANDOM

    @property
    def label(self) -> str:
        """What to pass as ``--weights`` to find these weights again: a hub id, a path, or "random"."""
        if self.random:
            return RANDOM
        if self.repo_id:
            return f"{self.repo_id}@{self.revision}" if self.revision else self.repo_id
        return str(self.path)

    def describe(self) -> str:
        """One line for messages and output headers."""
        if self.random:
            return f"{self.task}: RANDOM weights (untrained; outputs are not meaningful)"
        what = f"{self.repo_id}@{self.revision}" if self.repo_id else str(self.path)
        return f"{self.task}: {what} ({self.origin})" if self.origin else f"{self.task}: {what}"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for provenance records."""
        return {
            "task": self.task,
            "kind": self.kind,
            "path": str(self.path) if self.path is not None else None,
            "origin": self.origin,
            "repo_id": self.repo_id,
            "revision": self.revision,
            "random": self.random,
            "label": self.label,
        }


class Search:
    """Collects the places tried, for the final error message."""

    def __init__(self) -> None:
        self.tried: list[str] = []

    def note(self, place: str, result: str = "not found") -> None:
        self.tried.append(f"{place}: {result}")

    def error(self, task: str, what: str) -> WeightsError:
        lines = "\n".join(f"  - {t}" for t in self.tried)
        return WeightsError(f"no weights found for task {task!r} ({what}). Looked in:\n{lines}\n{HOW_TO_SUPPLY}")


def torch_hub_dir() -> Path:
    """torch hub directory (``$TORCH_HOME/hub``, else ``$XDG_CACHE_HOME/torch/hub`` or ``~/.cache/torch/hub``)."""
    return Path(torch.hub.get_dir()).expanduser()


def hf_cache_dir() -> Path:
    """Hugging Face hub cache, read from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def torch_checkpoint_dirs(cache_dirs: Sequence[Path] | None) -> list[Path]:
    if cache_dirs is not None:
        out: list[Path] = []
        for d in cache_dirs:
            out += [d, d / "checkpoints", d / "hub" / "checkpoints"]
        return out
    return [torch_hub_dir() / "checkpoints"]


def _hf_roots(cache_dirs: Sequence[Path] | None) -> list[Path]:
    if cache_dirs is not None:
        out: list[Path] = []
        for d in cache_dirs:
            out += [d, d / "hub"]
        return out
    return [hf_cache_dir()]


def hf_cached_snapshot(cache_root: Path, repo_id: str, revision: str | None) -> Path | None:
    """Snapshot folder of `repo_id` at `revision` (branch, tag or commit) in an HF cache, if present."""
    repo_dir = cache_root / f"models--{repo_id.replace('/', '--')}"
    rev = revision or "main"
    if re.fullmatch(r"[0-9a-f]{40}", rev):
        commit = rev
    else:
        ref = repo_dir / "refs" / rev
        try:
            commit = ref.read_text(encoding="utf-8").strip()
        except OSError:
            return None
    snap = repo_dir / "snapshots" / commit
    return snap if snap.is_dir() else None


def find_weights_file(directory: Path) -> Path | None:
    """Weights file of a model directory: model.safetensors, pytorch_model.bin, or a single .pth/.pt/.safetensors."""
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (directory / name).is_file():
            return directory / name
    found = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    return found[0] if len(found) == 1 else None


def offline_reason(allow_download: bool = True) -> str | None:
    """Why downloads are off (an environment variable or the caller), or None when they are allowed."""
    if not allow_download:
        return "downloads disabled by the caller"
    for var in _OFFLINE_VARS:
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"offline ({var}={os.environ[var]})"
    return None


def host_unreachable(url: str) -> str | None:
    host = urlparse(url).hostname or ""
    try:
        with socket.create_connection((host, 443), timeout=CONNECT_TIMEOUT_S):
            return None
    except OSError as exc:
        return f"no network ({host}: {exc})"


def download_url(
    url: str, dest: Path, *, sha256_prefix: str | None = None, progress: ProgressCallback | None = None
) -> Path:
    """Download `url` to `dest` atomically (temp file + rename) with socket timeouts; checks a sha256 prefix."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.part")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=READ_TIMEOUT_S) as resp, open(tmp, "wb") as f:
            total = int(resp.headers.get("Content-Length") or 0) or None
            done = 0
            while chunk := resp.read(1 << 20):
                f.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                emit(progress, "download", done, total, url=url)
        if sha256_prefix and not digest.hexdigest().startswith(sha256_prefix):
            raise WeightsError(f"downloaded {url} but its sha256 does not start with {sha256_prefix}")
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def _hf_download(repo_id: str, revision: str | None, cache_root: Path, need_config: bool,
                 extra_files: Sequence[str] = ()) -> Path:
    from huggingface_hub import snapshot_download
    from tqdm.auto import tqdm

    class _Quiet(tqdm):  # the library never prints
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    def fetch(patterns: list[str]) -> Path:
        return Path(
            snapshot_download(
                repo_id,
                revision=revision,
                cache_dir=str(cache_root),
                allow_patterns=patterns,
                etag_timeout=CONNECT_TIMEOUT_S * 2,
                tqdm_class=_Quiet,
            )
        )

    config = (["config.json"] if need_config else []) + list(extra_files)
    snap = fetch(config + ["model.safetensors"])
    if find_weights_file(snap) is None:
        snap = fetch(config + ["pytorch_model.bin"])
    if find_weights_file(snap) is None:
        raise WeightsError(f"{repo_id}@{revision or 'main'} holds no model.safetensors or pytorch_model.bin")
    return snap


def _usable_snapshot(snap: Path | None, need_config: bool, extra_files: Sequence[str] = ()) -> bool:
    if snap is None or find_weights_file(snap) is None:
        return False
    if not all((snap / f).is_file() for f in extra_files):
        return False
    return not need_config or (snap / "config.json").is_file()


def search_hf(
    task: str,
    repo_id: str,
    revision: str | None,
    search: Search,
    cache_dirs: Sequence[Path] | None,
    offline: str | None,
    need_config: bool,
    try_download: bool,
    extra_files: Sequence[str] = (),
) -> WeightsSource | None:
    """`repo_id` in the Hugging Face caches, then (with `try_download`) downloaded; `extra_files` (e.g. a
    tokenizer's) must be in the snapshot too. Notes each place tried in `search`."""
    kind = "dir" if need_config else "file"
    for root in _hf_roots(cache_dirs):
        snap = hf_cached_snapshot(root, repo_id, revision)
        repo_dir = root / ("models--" + repo_id.replace("/", "--"))
        place = f"Hugging Face cache {repo_dir} ({repo_id}@{revision or 'main'})"
        if _usable_snapshot(snap, need_config, extra_files):
            assert snap is not None
            path = snap if need_config else find_weights_file(snap)
            return WeightsSource(task, kind, path, "Hugging Face cache", repo_id, revision or "main")
        search.note(place, "incomplete snapshot" if snap is not None else "not found")
    if not try_download:
        return None
    place = f"download {repo_id}@{revision or 'main'} from the Hugging Face hub"
    reason = offline or host_unreachable("https://huggingface.co")
    if reason:
        search.note(place, f"skipped: {reason}")
        return None
    root = _hf_roots(cache_dirs)[0]
    try:
        snap = _hf_download(repo_id, revision, root, need_config, extra_files)
    except WeightsError as exc:
        search.note(place, f"failed: {exc}")
        return None
    except Exception as exc:  # network, HTTP and hub errors all mean "not available"
        search.note(place, f"failed: {type(exc).__name__}: {exc}")
        return None
    path = snap if need_config else find_weights_file(snap)
    return WeightsSource(task, kind, path, "downloaded from the Hugging Face hub", repo_id, revision or "main")


Locator = Callable[[Search, "Sequence[Path] | None", "str | None", "ProgressCallback | None"], "WeightsSource | None"]
"""locate(search, cache_dirs, offline_reason, progress) -> a source, or None after noting each place tried."""


@dataclass(frozen=True)
class WeightsLookup:
    """Where a task finds weights when ``--weights`` is not given, and how its IDs resolve.

    `locate` searches the task's default places; `need_config`: the weights are a Hugging Face
    model directory (config.json + weights); `default_revisions`: hub id -> revision used when
    ``--weights ID`` names no revision; `from_path`: for weights that are not state dicts (e.g. a
    tfjs graph model), turns an existing ``--weights`` file or folder into a source (or raises).
    """

    locate: Locator
    need_config: bool = False
    default_revisions: Mapping[str, str] = field(default_factory=dict)
    from_path: Callable[[str, Path], WeightsSource] | None = None


def _split_id(weights: str, lookup: WeightsLookup) -> tuple[str, str | None]:
    repo_id, _, revision = weights.partition("@")
    return repo_id, revision or lookup.default_revisions.get(repo_id)


def locate_weights(
    task_name: str,
    lookup: WeightsLookup,
    weights: str | os.PathLike[str] | None,
    *,
    cache_dirs: Sequence[str | os.PathLike[str]] | None = None,
    allow_download: bool = True,
    progress: ProgressCallback | None = None,
) -> WeightsSource:
    """Locate weights for the task `task_name` whose default places and hub revisions are `lookup`.

    `weights`: ``None`` (the task's own places, see its `WeightsLookup`), ``"random"``, a path
    handed to the task's `WeightsLookup.from_path` when it has one, else a path
    to a state dict file (.pth/.pt/.bin via ``torch.load(weights_only=True)``, or .safetensors),
    a Hugging Face model directory, or a Hugging Face model id (``ORG/NAME`` or ``ORG/NAME@REVISION``).
    `cache_dirs` replaces the default caches: each directory is searched as a folder of weight
    files, a torch hub directory and a Hugging Face cache (downloads go to the first one).
    Raises WeightsError (listing every place tried) when nothing usable is found.
    """
    dirs = [Path(d).expanduser() for d in cache_dirs] if cache_dirs is not None else None
    offline = offline_reason(allow_download)
    search = Search()
    need_config = lookup.need_config
    if weights is None:
        found = lookup.locate(search, dirs, offline, progress)
        if found is None:
            raise search.error(task_name, "no --weights given")
        return found
    text = os.fspath(weights)
    if text == RANDOM:
        return WeightsSource(task_name, RANDOM, None, "--weights random")
    path = Path(text).expanduser()
    if lookup.from_path is not None:
        if path.is_file() or path.is_dir():
            return lookup.from_path(task_name, path)
        raise WeightsError(f"--weights {text}: no such file or folder")
    if path.is_file():
        if path.suffix not in WEIGHT_SUFFIXES:
            raise WeightsError(f"{path}: not a weights file (expected one of {', '.join(WEIGHT_SUFFIXES)})")
        return WeightsSource(task_name, "file", path, "--weights")
    if path.is_dir():
        if need_config and not (path / "config.json").is_file():
            raise WeightsError(f"{path}: not a Hugging Face model directory (no config.json). {HOW_TO_SUPPLY}")
        if find_weights_file(path) is None:
            raise WeightsError(f"{path}: no weights file (model.safetensors, pytorch_model.bin or a single .pth) in it")
        return WeightsSource(task_name, "dir", path, "--weights")
    if path.suffix in WEIGHT_SUFFIXES or not _HF_ID.match(text):
        raise WeightsError(f"weights file {path} not found. {HOW_TO_SUPPLY}")
    repo_id, revision = _split_id(text, lookup)
    found = search_hf(task_name, repo_id, revision, search, dirs, offline, need_config, try_download=True)
    if found is None:
        raise search.error(task_name, f"--weights {text}")
    return found


def torch_hub_file(task: str, names: Sequence[str], pattern: str, search: Search,
                   cache_dirs: Sequence[Path] | None) -> WeightsSource | None:
    """The first of `names` (then any file matching `pattern`) in the torch hub checkpoint folders."""
    for d in torch_checkpoint_dirs(cache_dirs):
        candidates = list(names)
        if d.is_dir():
            candidates += sorted(p.name for p in d.glob(pattern) if p.name not in candidates)
        for name in candidates:
            if (d / name).is_file():
                return WeightsSource(task, "file", d / name, "torch hub cache")
        search.note(f"torch hub cache {d / pattern}")
    return None


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """Read a state dict file (.safetensors, or .pth/.pt/.bin/.ckpt/.pyth with ``weights_only=True``) onto the CPU.

    A checkpoint that wraps the weights under ``state_dict``/``model``/``model_state_dict``/``model_state`` (pytorchvideo) is unwrapped.
    """
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        else:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"weights file {path} not found") from None
    except Exception as exc:  # pickle, zip and safetensors header errors: the file is not a usable state dict
        raise WeightsError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})") from None
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "model_state_dict", "model_state"):
            inner = obj.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, Tensor) for v in inner.values()):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(f"{path}: not a state dict (got {type(obj).__name__})")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
    if bad:
        raise WeightsError(f"{path}: not a state dict of tensors (e.g. entry {bad[0]!r})")
    return dict(obj)


def read_source_state_dict(source: WeightsSource) -> dict[str, Tensor]:
    """State dict of a ``file`` or ``dir`` source (for a directory, its single weights file)."""
    if source.path is None or source.kind == RANDOM:
        raise WeightsError(f"{source.describe()}: no weights to read")
    if source.kind == "dir":
        f = find_weights_file(source.path)
        if f is None:
            raise WeightsError(f"{source.path}: no weights file in directory")
        return read_state_dict(f)
    return read_state_dict(source.path)


def strip_prefixes(sd: Mapping[str, Tensor], model_keys: set[str], prefixes: Sequence[str]) -> dict[str, Tensor]:
    """Remove wrapper prefixes (``module.`` ...) from keys when that makes them match `model_keys`."""
    out = dict(sd)
    for prefix in prefixes:
        if not any(k.startswith(prefix) for k in out):
            continue
        stripped = {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in out.items()}
        if len(set(stripped) & model_keys) > len(set(out) & model_keys):
            out = stripped
    return out


def rename_keys(sd: Mapping[str, Tensor], model_keys: set[str],
                renames: Sequence[tuple[str, str]]) -> dict[str, Tensor]:
    """Apply substring `renames` (in order) to each key not in `model_keys`, when the result is one."""
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        if key not in model_keys:
            new = key
            for old, repl in renames:
                new = new.replace(old, repl)
            key = new if new in model_keys else key
        out[key] = value
    return out


def _is_ignorable(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def _summarize(keys: Sequence[str], n: int = 5) -> str:
    head = ", ".join(keys[:n])
    return f"{len(keys)} ({head}{', ...' if len(keys) > n else ''})"


def check_state_dict(
    module: nn.Module, sd: Mapping[str, Tensor], *, what: str, ignore: Callable[[str], bool] = _is_ignorable
) -> None:
    """Raise WeightsError naming missing, unexpected and shape-mismatched keys (first few, with counts)."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in sd and not ignore(k)]
    unexpected = [k for k in sd if k not in expected and not ignore(k)]
    mismatched = [
        f"{k} {tuple(sd[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in sd and sd[k].shape != v.shape
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys: {_summarize(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_summarize(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatches (file vs model): {_summarize(mismatched, 3)}")
        raise WeightsError(f"{what} does not fit the backbone: " + "; ".join(parts))


def load_checked_state_dict(module: nn.Module, sd: Mapping[str, Tensor], *, what: str) -> None:
    """`check_state_dict`, then load (dtype converted to the module's)."""
    check_state_dict(module, sd, what=what)
    expected = module.state_dict()
    module.load_state_dict({k: v for k, v in sd.items() if k in expected}, strict=False)


def package_file(package: str, relative: str) -> Path | None:
    """Path of a data file inside an installed package, found without importing the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / relative
        if path.is_file():
            return path
    return None
