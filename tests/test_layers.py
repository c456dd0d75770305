"""The package's imports read one way: no import cycle among nvcodec modules and no upward import.

Every ``import`` / ``from ... import`` statement is read from the source (AST), at module level and
inside functions alike. Layers, lowest first (a module may import its own layer and those below):

  0  nvcodec.errors, nvcodec.progress      shared error types, progress events, JSON output
  1  nvcodec.container                     the .nvp format
  2  nvcodec.inr, nvcodec.video            the network math; media I/O
  3  nvcodec.codec                         files and frames
  4  nvcodec.models                        backbones, their weights, task declarations, the registry
  5  nvcodec.route                         adapters, clip windows, building and running routes (infer)
  6  nvcodec.adapt                         choosing and training routes (selection scores, attach, tune)
  7  nvcodec.api, nvcodec.tasks            the public Python API; deprecated aliases of the old paths
  8  nvcodec.jobs, nvcodec.bench,          many videos at once; benchmarks; the HTTP service
     nvcodec.serve
  9  nvcodec (the package's lazy facade)
 10  nvcodec_cli                           the command line

The package root plays two parts: its module-level code only defines ``__version__`` (which any
module may read: the root always runs first), and its ``__getattr__`` imports the public names
lazily from the layers below. So imports *of* the root are not edges; imports *by* it are layer 9.

The registry imports the model modules by discovery (`importlib`, inside `nvcodec.models`) and
the `nvcodec.tasks` aliases resolve through `importlib` too; neither shows up as a statement.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"nvcodec": ROOT / "nvcodec", "nvcodec_cli": ROOT / "cli"}
LAYERS: list[tuple[str, ...]] = [
    ("nvcodec.errors", "nvcodec.progress", "nvcodec.threads", "nvcodec.jsonout"),
    ("nvcodec.container",),
    ("nvcodec.inr", "nvcodec.video"),
    ("nvcodec.codec",),
    ("nvcodec.models",),
    ("nvcodec.route",),
    ("nvcodec.adapt",),
    ("nvcodec.api", "nvcodec.tasks"),
    ("nvcodec.jobs", "nvcodec.bench", "nvcodec.serve"),
    ("nvcodec",),
    ("nvcodec_cli",),
]


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for top, root in PACKAGES.items():
        for path in root.rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([top, *parts])] = path
    return out


MODULES = _modules()


def layer(module: str) -> int:
    """Index in LAYERS of the longest prefix matching `module`."""
    best, depth = None, -1
    for i, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and name.count(".") > depth:
                best, depth = i, name.count(".")
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best


def _resolve(importer: str, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    is_pkg = MODULES[importer].name == "__init__.py"
    base = importer.split(".")
    base = base if is_pkg else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str) -> set[str]:
    """nvcodec modules that `module` imports anywhere in its source (a package counts as its __init__)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            targets = [f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in MODULES:
                t = t.rpartition(".")[0]
            if t and t != module and t != "nvcodec":
                found.add(t)
    return found


GRAPH = {m: imports_of(m) for m in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _package_edges(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """A package's __init__ importing its own submodules is how it re-exports them; the walk keeps
    those edges out so that `from nvcodec.container import X` inside the package is no cycle."""
    out = {}
    for m, deps in graph.items():
        is_pkg = MODULES[m].name == "__init__.py"
        out[m] = {d for d in deps if not (is_pkg and d.startswith(m + "."))}
    return out


def test_the_package_root_imports_nothing_at_module_level():
    tree = ast.parse(MODULES["nvcodec"].read_text(encoding="utf-8"))
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert all(isinstance(n, ast.ImportFrom) and n.level == 0 and n.module in ("__future__", "typing") for n in top)


def test_every_module_has_a_layer():
    for m in MODULES:
        layer(m)


def test_no_import_cycle():
    assert _cycles(_package_edges(GRAPH)) == []


def test_no_upward_import():
    upward = sorted(f"{m} (layer {layer(m)}) imports {d} (layer {layer(d)})"
                    for m, deps in GRAPH.items() for d in deps if layer(d) > layer(m))
    assert upward == []


def test_the_codec_layer_never_imports_the_task_layers():
    for m, deps in GRAPH.items():
        if layer(m) <= layer("nvcodec.codec"):
            assert not {d for d in deps if layer(d) >= layer("nvcodec.models")}, m


def test_the_walk_sees_function_level_imports_and_would_catch_the_old_circles():
    # route.source reads the original video inside a function: the walk sees it.
    assert "nvcodec.video" in GRAPH["nvcodec.route.source"]
    # The old codec -> tasks circle (NvpVideo.attach importing attach, which imports codec.video) is caught.
    src = "def attach(self):\n    from ..adapt.attach import attach\n"
    node = next(n for n in ast.walk(ast.parse(src)) if isinstance(n, ast.ImportFrom))
    target = _resolve("nvcodec.codec.video", node)
    assert target == "nvcodec.adapt.attach" and layer(target) > layer("nvcodec.codec.video")
    graph = {**GRAPH, "nvcodec.codec.video": GRAPH["nvcodec.codec.video"] | {target}}
    assert any("nvcodec.codec.video" in c for c in _cycles(_package_edges(graph)))


def test_library_never_imports_click():
    for m, path in MODULES.items():
        if m.startswith("nvcodec.") or m == "nvcodec":
            tree = ast.parse(path.read_text(encoding="utf-8"))
            names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
            names |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
            assert "click" not in names, m
