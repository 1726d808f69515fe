"""dripml.settings: defaults, environment overrides, precedence, and that it is the only reader.

Fast: no MLflow, no Ray. Every test starts from an environment without any of the variables
(the ``clean`` fixture), so a developer's own settings cannot leak in.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dripml import settings
from dripml.errors import SettingsError

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "platform" / "dripml"


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No dripml variable set; the working directory and home are ``tmp_path``."""
    for variable in settings.VARIABLES:
        monkeypatch.delenv(variable.name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --------------------------------------------------------------------------------- defaults


def test_defaults(clean: Path) -> None:
    state = clean.resolve() / ".dripml"
    assert settings.state_dir() == state
    assert settings.default_tracking_uri() == f"sqlite:///{state}/mlflow.db"
    assert settings.resolve_tracking_uri() == f"sqlite:///{state}/mlflow.db"
    assert settings.tracking_uri() is None  # no embedded default for callers needing a server
    assert settings.cache_dir() == clean / "home" / ".cache" / "dripml"
    assert settings.base_image(gpu=False) == "python:3.11-slim"
    assert settings.base_image(gpu=True) == "nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04"
    assert settings.train_storage() is None
    assert settings.bentoml_home() == state / "bentoml"
    assert settings.cuda_visible_devices() is None
    assert settings.ray_auth_mode() is None
    assert settings.serve_settings() == settings.ServeSettings(
        model_path=None, model_uri=None, model_ref=None, workers=1, batching="auto")
    assert settings.store_timeout_s() == 5.0
    assert settings.mlflow_http_env() == {"MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
                                          "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
                                          "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


def test_reading_creates_nothing(clean: Path) -> None:
    settings.resolve_tracking_uri()
    settings.bentoml_home()
    settings.cache_dir()
    assert not (clean / ".dripml").exists() and not (clean / "home").exists()


# --------------------------------------------------------------------------- the environment


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, clean: Path) -> None:
    values = {
        "DRIPML_TRACKING_URI": "http://dripml-mlflow.example.com:5000",
        "MLFLOW_TRACKING_URI": "http://mlflow.example.com:5000",
        "DRIPML_RAY_ADDRESS": "ray://head.example.com:10001",
        "RAY_ADDRESS": "head.example.com:6379",
        "DRIPML_CACHE_DIR": str(clean / "cache"),
        "DRIPML_BASE_IMAGE": "registry.example.com/base/python:3.11",
        "DRIPML_GPU_BASE_IMAGE": "registry.example.com/base/cuda:12",
        "DRIPML_TRAIN_STORAGE": "s3://bucket/train",
        "BENTOML_HOME": str(clean / "bento"),
        "CUDA_VISIBLE_DEVICES": "0,1",
        "RAY_AUTH_MODE": "token",
        "DRIPML_MODEL_PATH": "/models/adult",
        "DRIPML_MODEL_URI": "models:/adult/3",
        "DRIPML_MODEL_REF": "adult@champion",
        "DRIPML_SERVE_WORKERS": "4",
        "DRIPML_SERVE_BATCHING": "on",
        "DRIPML_SERVE_MAX_BODY_MIB": "0.5",
        "DRIPML_SERVE_TOKEN": "t0ken\n",
        "DRIPML_SERVE_FAST_PATH": "off",
        "DRIPML_SERVE_ACCESS_LOG": "ON",
        "DRIPML_SERVE_TRACING": "true",
        "DRIPML_REFINE_SERVING_PATH": "false",
        "DRIPML_FRAME_LAYOUT": "Measured",
        "CC": "clang",
        "DRIPML_STORE_TIMEOUT_S": "2.5",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "2",
    }
    assert set(values) == {v.name for v in settings.VARIABLES}  # every one is covered here
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    assert settings.resolve_tracking_uri() == settings.tracking_uri() == values[
        "DRIPML_TRACKING_URI"]  # dripml's own variable wins over MLflow's
    monkeypatch.delenv("DRIPML_TRACKING_URI")
    assert settings.resolve_tracking_uri() == settings.tracking_uri() == values[
        "MLFLOW_TRACKING_URI"]
    assert settings.cache_dir() == clean / "cache"
    assert settings.base_image(gpu=False) == values["DRIPML_BASE_IMAGE"]
    assert settings.base_image(gpu=True) == values["DRIPML_GPU_BASE_IMAGE"]
    assert settings.train_storage() == "s3://bucket/train"
    assert settings.bentoml_home() == clean / "bento"
    assert settings.frame_layout() == "measured"
    monkeypatch.setenv("DRIPML_FRAME_LAYOUT", "fastest")
    with pytest.raises(SettingsError, match="auto or measured"):
        settings.frame_layout()
    assert settings.cuda_visible_devices() == "0,1"
    assert settings.ray_auth_mode() == "token"
    assert settings.serve_settings() == settings.ServeSettings(
        model_path="/models/adult", model_uri="models:/adult/3", model_ref="adult@champion",
        workers=4, batching="on", max_body_mib=0.5, token="t0ken", fast_path=False,
        access_log=True, tracing=True)
    assert "t0ken" not in repr(settings.serve_settings())  # never in a log line
    assert settings.store_timeout_s() == 2.5
    assert settings.mlflow_http_env() == {}  # the user's MLflow HTTP values win
    assert settings.c_compiler() == "clang" and not settings.refine_serving_path()


def test_a_serve_switch_is_on_or_off(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = settings.serve_settings()
    assert (defaults.fast_path, defaults.access_log, defaults.tracing) == (True, False, False)
    monkeypatch.setenv("DRIPML_SERVE_FAST_PATH", "sometimes")
    with pytest.raises(SettingsError, match="DRIPML_SERVE_FAST_PATH must be on or off, got "
                                            "'sometimes'"):
        settings.serve_settings()


def test_an_empty_variable_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MLFLOW_TRACKING_URI", "DRIPML_BASE_IMAGE", "DRIPML_MODEL_URI",
                 "DRIPML_SERVE_WORKERS"):
        monkeypatch.setenv(name, "  ")
    assert settings.tracking_uri() is None
    assert settings.resolve_tracking_uri().startswith("sqlite:///")
    assert settings.base_image(gpu=False) == settings.DEFAULT_BASE_IMAGE
    config = settings.serve_settings()
    assert config.model_uri is None and config.workers == 1


def test_an_empty_cuda_visible_devices_hides_every_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert settings.cuda_visible_devices() == ""


def test_an_explicit_mapping_is_read_instead_of_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIPML_BASE_IMAGE", "from-the-environment:1")
    assert settings.base_image(False, environ={}) == settings.DEFAULT_BASE_IMAGE
    assert settings.base_image(False, environ={"DRIPML_BASE_IMAGE": "given:1"}) == "given:1"


@pytest.mark.parametrize("workers", ["0", "-2", "two", "1.5"])
def test_bad_worker_count_names_the_variable(monkeypatch: pytest.MonkeyPatch,
                                             workers: str) -> None:
    monkeypatch.setenv("DRIPML_SERVE_WORKERS", workers)
    with pytest.raises(SettingsError, match=rf"DRIPML_SERVE_WORKERS .*at least 1.*{workers!r}"):
        settings.serve_settings()


@pytest.mark.parametrize("seconds", ["0", "-1", "five", "inf"])
def test_bad_store_timeout_names_the_variable(monkeypatch: pytest.MonkeyPatch,
                                              seconds: str) -> None:
    monkeypatch.setenv("DRIPML_STORE_TIMEOUT_S", seconds)
    with pytest.raises(SettingsError, match="DRIPML_STORE_TIMEOUT_S must be a number of "
                                            "seconds above 0"):
        settings.store_timeout_s()


@pytest.mark.parametrize("mib", ["0", "-1", "ten", "inf", "nan"])
def test_bad_body_limit_names_the_variable(monkeypatch: pytest.MonkeyPatch, mib: str) -> None:
    monkeypatch.setenv("DRIPML_SERVE_MAX_BODY_MIB", mib)
    with pytest.raises(SettingsError, match=rf"DRIPML_SERVE_MAX_BODY_MIB .*above 0.*{mib!r}"):
        settings.serve_settings()


# --------------------------------------------------------------------------------- precedence


def test_tracking_uri_precedence(monkeypatch: pytest.MonkeyPatch, clean: Path) -> None:
    embedded = f"sqlite:///{clean.resolve()}/.dripml/mlflow.db"
    assert settings.resolve_tracking_uri() == embedded                        # default
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env:5000")
    assert settings.resolve_tracking_uri() == "http://env:5000"               # environment
    assert settings.resolve_tracking_uri("http://arg:5000") == "http://arg:5000"  # argument
    assert settings.tracking_uri("http://arg:5000") == "http://arg:5000"
    other = clean / "elsewhere"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert settings.resolve_tracking_uri(workdir=other) == (
        f"sqlite:///{other.resolve()}/.dripml/mlflow.db")


def test_absolute_tracking_uri(clean: Path) -> None:
    here = clean.resolve()
    assert settings.absolute_tracking_uri("sqlite:///a/b.db") == f"sqlite:///{here}/a/b.db"
    assert settings.absolute_tracking_uri("sqlite:////abs.db") == "sqlite:////abs.db"
    assert settings.absolute_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert settings.absolute_tracking_uri("mlruns") == str(here / "mlruns")
    assert settings.resolve_tracking_uri("sqlite:///x.db", absolute=True) == (
        f"sqlite:///{here}/x.db")


def test_base_image_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIPML_BASE_IMAGE", "env:1")
    monkeypatch.setenv("DRIPML_GPU_BASE_IMAGE", "env-gpu:1")
    assert settings.base_image(False) == "env:1" and settings.base_image(True) == "env-gpu:1"
    assert settings.base_image(False, "arg:1") == settings.base_image(True, "arg:1") == "arg:1"


# ------------------------------------------------------------------------ reading discipline


def test_importing_settings_reads_no_environment_variable() -> None:
    # A fresh interpreter whose os.environ records every read, then `import dripml.settings`.
    probe = """
import os, json
reads = []
class Spy(dict):
    def __getitem__(self, key):
        reads.append(key); return super().__getitem__(key)
    def get(self, key, default=None):
        reads.append(key); return super().get(key, default)
    def __contains__(self, key):
        reads.append(key); return super().__contains__(key)
os.environ = Spy(os.environ)
import dripml.settings
print(json.dumps(reads))
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True, cwd=ROOT)
    assert json.loads(done.stdout) == []


def _environ(node: ast.AST) -> bool:
    """``os.environ`` or a bare ``environ``."""
    return (isinstance(node, ast.Attribute) and node.attr == "environ"
            and isinstance(node.value, ast.Name) and node.value.id == "os") or (
        isinstance(node, ast.Name) and node.id == "environ")


def environment_reads(tree: ast.AST) -> list[int]:
    """Lines that read one variable: ``os.environ.get(...)``, ``os.getenv(...)``,
    ``os.environ[...]`` (not an assignment) and ``... in os.environ``. Copying the whole
    environment for a child process (``dict(os.environ)``) is not a read of a setting."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            func = node.func
            if (func.attr == "get" and _environ(func.value)) or (
                    func.attr == "getenv" and isinstance(func.value, ast.Name)
                    and func.value.id == "os"):
                lines.append(node.lineno)
        elif isinstance(node, ast.Subscript) and _environ(node.value) and isinstance(
                node.ctx, ast.Load):
            lines.append(node.lineno)
        elif isinstance(node, ast.Compare) and any(
                isinstance(op, ast.In | ast.NotIn) for op in node.ops) and any(
                _environ(c) for c in node.comparators):
            lines.append(node.lineno)
    return sorted(lines)


def test_the_finder_finds_planted_reads() -> None:
    planted = ("import os\nos.environ.get('A')\nos.getenv('B')\nos.environ['C']\n"
               "'D' in os.environ\nos.environ['E'] = '1'\nenv = dict(os.environ)\n")
    assert environment_reads(ast.parse(planted)) == [2, 3, 4, 5]


def test_only_settings_reads_the_environment() -> None:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "settings.py" and path.parent == PACKAGE:
            continue
        lines = environment_reads(ast.parse(path.read_text(), str(path)))
        if lines:
            found[str(path.relative_to(ROOT))] = lines
    assert not found, f"read these through dripml.settings instead: {found}"


def test_the_readme_table_lists_every_variable() -> None:
    table = settings.markdown_table()
    assert table.startswith("| Variable | Default | Meaning | Read by |")
    for variable in settings.VARIABLES:
        assert f"| `{variable.name}` |" in table
        assert variable.meaning and variable.default and variable.readers
        for reader in variable.readers:  # each reader is a real module of the package
            parts = reader.split(".")
            assert (PACKAGE.joinpath(*parts[:-1]) / f"{parts[-1]}.py").is_file(), reader
    assert len({v.name for v in settings.VARIABLES}) == len(settings.VARIABLES)
