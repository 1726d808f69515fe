"""The front doors over one set of verbs: the CLI and the Kubeflow pipeline's components call
the verbs of ``dripml.api`` (the pipeline verbs: ``dripml.kfp``), and the pipeline compiles
from an installed wheel, with no source checkout."""

from __future__ import annotations

import ast
import inspect
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from dripml.kfp import components

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "platform" / "dripml"
CLI_MAY_IMPORT = {"dripml.api", "dripml.kfp", "dripml.ui", "dripml.errors",
                  "dripml.core.progress", "dripml.settings"}
"""The verbs, the pipeline's front door (``drip pipeline``) and the web page's (``drip ui``
calls ``dripml.ui.serve``), the errors it prints, the progress display it hands to ``train``,
and the settings (the environment variables its options default from, the run's log file)."""
SPEC = {"name": "adult", "task": "binary",
        "data": {"train": "dataset://adult/train", "test": "dataset://adult/test",
                 "label": "income"},
        "algorithms": [{"name": "lightgbm", "params": {"n_estimators": 20}}],
        "search": {"num_trials": 2, "algorithm": "random"}}


def runtime_imports(path: Path) -> set[str]:
    """The dripml modules ``path`` imports at run time (``if TYPE_CHECKING:`` skipped)."""
    found = set()
    stack: list[ast.AST] = [ast.parse(path.read_text())]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                stack.extend(child.orelse)
                continue
            stack.append(child)
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("dripml")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dripml"):
            module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.add(sub if (PACKAGE.parent / sub.replace(".", "/")).with_suffix(".py")
                          .exists() or (PACKAGE.parent / sub.replace(".", "/")).is_dir()
                          else module)
    return found


def test_the_cli_calls_only_the_verbs() -> None:
    imported = runtime_imports(PACKAGE / "cli.py")
    assert "dripml.api" in imported and "dripml.kfp" in imported
    assert imported <= CLI_MAY_IMPORT, sorted(imported - CLI_MAY_IMPORT)


VERBS = {"validate_spec": "validate_for_cluster", "create_cluster": "create_cluster",
         "wait_for_cluster": "wait_for_cluster", "run_search": "search_on_cluster",
         "register_model": "register_chosen", "delete_cluster": "delete_clusters"}


@pytest.mark.parametrize("step", components.STEPS, ids=lambda f: f.__name__)
def test_each_component_calls_its_verb_from_its_source_alone(
        step: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """KFP ships a component as its function's source only: run from that alone, each calls
    exactly its verb of dripml.api with its arguments, in order."""
    from dripml import api

    calls: list[tuple[str, tuple[Any, ...]]] = []
    for verb in set(VERBS.values()):
        monkeypatch.setattr(api, verb, lambda *args, _verb=verb: calls.append((_verb, args))
                            or f"{_verb} done")
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # run_search sets it if unset: undone after
    namespace: dict[str, Any] = {}
    exec(textwrap.dedent(inspect.getsource(step)), namespace)  # noqa: S102 - our own source
    parameters = list(inspect.signature(step).parameters)
    arguments = [f"<{name}>" for name in parameters]
    assert namespace[step.__name__](*arguments) == f"{VERBS[step.__name__]} done"
    assert calls == [(VERBS[step.__name__], tuple(arguments))]


def test_a_pipeline_compiles_from_the_installed_wheel(tmp_path: Path) -> None:
    """Build the wheel, install it on its own (``--target``; the venv supplies the
    dependencies) and compile a pipeline in a folder outside the checkout (about 4 s)."""
    # Build from a copy of the sources, so the checkout gets no build/ or egg-info.
    source = tmp_path / "source"
    shutil.copytree(PACKAGE.parent, source / "platform",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                            "--no-build-isolation", "-w", str(wheels), str(source)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    [wheel] = wheels.glob("dripml-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    expected = {p.relative_to(PACKAGE.parent).as_posix() for p in PACKAGE.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    assert expected <= shipped, sorted(expected - shipped)  # every module and py.typed

    site = tmp_path / "site"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps",
                                "--no-compile", "--target", str(site), str(wheel)],
                               capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]

    work = tmp_path / "work"  # outside the checkout: no pipelines/, charts/ or platform/
    work.mkdir()
    (work / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    script = ("import dripml, dripml.kfp; "
              "path = dripml.kfp.compile('spec.yaml', 'out/pipeline.yaml'); "
              "print(dripml.__file__); print(path.resolve())")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(site), os.environ.get("PYTHONPATH")) if p)}
    compiled = subprocess.run([sys.executable, "-c", script], cwd=work, env=env,
                              capture_output=True, text=True, timeout=300)
    assert compiled.returncode == 0, compiled.stdout[-3000:] + compiled.stderr[-3000:]
    package_file, output = compiled.stdout.strip().splitlines()[-2:]
    assert Path(package_file).resolve().is_relative_to(site.resolve()), package_file
    documents = list(yaml.safe_load_all(Path(output).read_text()))
    assert documents[0]["pipelineInfo"]["name"] == "dripml-drip"
    assert set(documents[0]["deploymentSpec"]["executors"]) == {
        f"exec-{name.replace('_', '-')}" for name in VERBS}
