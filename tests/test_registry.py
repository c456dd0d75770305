"""Tasks declare themselves; the registry names no model; a task name is looked up once per call."""

from __future__ import annotations

import importlib.metadata
import json
import os
import sys

import pytest

from conftest import ROOT, copy_nvp, encode_tiny
from nvcodec.errors import UsageError
from nvcodec.models import registry
from nvcodec.models.heads import CLASSIFICATION
from nvcodec.models.weights import WeightsLookup

TINY = "random-tiny"


class CountingTasks(dict):
    """The registry's table, counting lookups by name."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lookups: list[str] = []

    def __getitem__(self, name):
        self.lookups.append(name)
        return super().__getitem__(name)


@pytest.fixture
def counting(monkeypatch):
    registry.discover()
    table = CountingTasks(registry._TASKS)
    monkeypatch.setattr(registry, "_TASKS", table)
    return table


@pytest.fixture(scope="module")
def base_nvp(tmp_path_factory):
    return encode_tiny(tmp_path_factory.mktemp("registry"))


def _cli(*args: str) -> int:
    from nvcodec_cli.main import main

    try:
        main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_attach_and_infer_look_the_task_up_once_per_call(base_nvp, tmp_path, counting, capsys):
    nvp = copy_nvp(base_nvp, tmp_path)
    assert _cli("attach", nvp, "--task", "resnet50", "--weights", TINY, "--top-k", "0.2", "--epochs", "2",
                "--json") == 0
    assert counting.lookups == ["resnet50"]
    counting.lookups.clear()
    capsys.readouterr()
    assert _cli("infer", nvp, "--task", "resnet50", "--frames", "0:2", "--weights", TINY, "--json") == 0
    assert counting.lookups == ["resnet50"]
    assert json.loads(capsys.readouterr().out)["tasks"]["resnet50"]["frames"][0]["frame"] == 0


def test_python_api_looks_up_once_and_accepts_a_spec(base_nvp, tmp_path, counting):
    import nvcodec
    from nvcodec.adapt.attach import attach
    from nvcodec.route.infer import infer

    nvp = copy_nvp(base_nvp, tmp_path)
    attach(nvp, "resnet50", weights=TINY, top_k=0.2, epochs=2)
    assert counting.lookups == ["resnet50"]
    spec = registry.get_task("resnet50")
    counting.lookups.clear()
    with nvcodec.open(nvp) as v:
        r = v.infer(spec, frames=(0, 1), weights=TINY)
    assert counting.lookups == [] and r["tasks"]["resnet50"]["frames"][0]["frame"] == 0
    infer(nvp, ["resnet50", "resnet50"], frames=(0, 1), weights=TINY)
    assert counting.lookups == ["resnet50", "resnet50"]


def test_readme_task_table_comes_from_the_declarations():
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    try:
        import readme_tasks
    finally:
        sys.path.pop(0)
    text = readme_tasks.README.read_text(encoding="utf-8")
    assert readme_tasks.render(text) == text, "run python scripts/readme_tasks.py"
    for spec in registry.list_tasks():
        assert spec.readme_row() in text


def test_every_builtin_task_is_declared_next_to_its_model():
    for spec in registry.list_tasks():
        assert spec.declared_in.startswith("nvcodec.models.") and spec.declared_in != "nvcodec.models.registry"
    import ast

    tree = ast.parse(open(registry.__file__, encoding="utf-8").read())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    declaring = {spec.declared_in for spec in registry.list_tasks()}
    assert not imported & declaring


def _toy_spec(name: str, module: str) -> registry.TaskSpec:
    from nvcodec.models.efficientnet import build_efficientnet
    from nvcodec.models.geometry import whole_frame_geometry

    return registry.declare(name, head=CLASSIFICATION, builder=build_efficientnet, description="toy",
                            backbone="toy", injection_points=("stem",), mean=(0.5,) * 3, std=(0.5,) * 3,
                            geometry=lambda hw: whole_frame_geometry(hw, 64),
                            weights=WeightsLookup(lambda *a: None), declared_in=module)


def test_decorator_declares_and_a_second_module_cannot_take_a_name(monkeypatch):
    registry.discover()
    monkeypatch.setattr(registry, "_TASKS", dict(registry._TASKS))

    @registry.task("toy_decorated", head=CLASSIFICATION, description="toy", backbone="toy",
                   injection_points=("stem",), mean=(0.5,) * 3, std=(0.5,) * 3,
                   geometry=lambda hw: hw, weights=WeightsLookup(lambda *a: None))
    def build(source, device, tiny):
        raise AssertionError("not built here")

    spec = registry.get_task("toy_decorated")
    assert spec.declared_in == __name__ and spec.output_type == "classification"
    with pytest.raises(UsageError, match="declared twice"):
        _toy_spec("toy_decorated", "someone.else")
    with pytest.raises(UsageError, match="unknown task 'nope'"):
        registry.get_task("nope")


def test_a_plugin_package_adds_a_task_through_the_entry_point_group(tmp_path, monkeypatch):
    (tmp_path / "toy_plugin.py").write_text(
        "from nvcodec.models.registry import TaskSpec\n"
        "import test_registry\n"
        "def tasks():\n"
        "    return [test_registry._toy_spec('toy_plugin_task', __name__)]\n",
        encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry.discover()
    monkeypatch.setattr(registry, "_TASKS", dict(registry._TASKS))
    monkeypatch.setattr(registry, "_discovered", False)
    monkeypatch.delenv("NVCODEC_NO_PLUGINS", raising=False)
    ep = importlib.metadata.EntryPoint("toy", "toy_plugin:tasks", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group=None: [ep] if group == registry.ENTRY_POINT_GROUP else [])
    names = registry.task_names()
    assert "toy_plugin_task" in names and "efficientnet_lite0" in names
    assert registry.get_task("toy_plugin_task").declared_in == "toy_plugin"


def test_a_broken_plugin_warns_and_the_builtin_tasks_stay(monkeypatch):
    registry.discover()
    monkeypatch.setattr(registry, "_TASKS", dict(registry._TASKS))
    monkeypatch.setattr(registry, "_discovered", False)
    monkeypatch.delenv("NVCODEC_NO_PLUGINS", raising=False)
    ep = importlib.metadata.EntryPoint("broken", "no_such_module_xyz:tasks", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group=None: [ep] if group == registry.ENTRY_POINT_GROUP else [])
    with pytest.warns(RuntimeWarning, match="task plugin 'broken'"):
        names = registry.task_names()
    assert "resnet50" in names


def test_old_import_paths_are_the_moved_modules():
    import nvcodec.adapt.attach
    import nvcodec.models.base
    import nvcodec.tasks.attach
    import nvcodec.tasks.backbone
    from nvcodec.tasks.weights import WeightsSource, resolve_weights

    assert nvcodec.tasks.attach is nvcodec.adapt.attach
    assert nvcodec.tasks.backbone is nvcodec.models.base
    assert nvcodec.adapt.attach.__spec__.name == "nvcodec.adapt.attach"
    assert resolve_weights is registry.resolve_weights and WeightsSource.__module__ == "nvcodec.models.weights"


def test_help_names_the_declared_tasks():
    from click.testing import CliRunner

    from nvcodec_cli.main import app

    for command in ("attach", "infer"):
        out = " ".join(CliRunner().invoke(app, [command, "--help"]).output.split())
        assert all(name in out for name in registry.task_names()), command
    out = " ".join(CliRunner().invoke(app, ["infer", "--help"]).output.split())
    assert f"Zero-shot tasks ({', '.join(registry.zero_shot_names())})" in out
