"""Serving costs measured on a tiny real model, through TrainedModel.predict_records."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import cloudpickle
import numpy as np
import pandas as pd
import pytest

from dripml.algorithms import registry as algorithms
from dripml.algorithms.registry import BuildContext
from dripml.core import costs
from dripml.core.features import TabularEncoder, infer_kinds
from dripml.core.model import FittedRecipe, Prediction, TrainedModel


def tiny_model(**extra: Any) -> tuple[TrainedModel, list[dict[str, Any]]]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=300), "z": rng.normal(size=300),
                          "c": rng.choice(["a", "b", "c"], size=300)})
    frame.loc[::17, "x"] = np.nan
    y = ((frame["x"].fillna(0) + (frame["c"] == "a")) > 0.5).to_numpy(dtype=np.int64)
    encoder = TabularEncoder().fit(frame, infer_kinds(frame, {}))
    ctx = BuildContext(task="binary", layout=encoder.layout)
    recipe = algorithms.build("lightgbm", ctx, {"n_estimators": 10, "num_leaves": 8})
    fitted = FittedRecipe(recipe, "binary", 2).fit(encoder.transform(frame), y)
    model = TrainedModel(encoder=encoder, fitted=fitted.single_threaded(), task="binary",
                         classes=("no", "yes"), label="y", algorithm="lightgbm", **extra)
    return model, costs.json_records(frame)


class Counting:
    """Wraps a model and records the size of every predict_records call."""

    def __init__(self, model: TrainedModel) -> None:
        self.model = model
        self.sizes: list[int] = []

    def predict_records(self, records: Sequence[Mapping[str, Any]]) -> Prediction:
        self.sizes.append(len(records))
        return self.model.predict_records(records)


def test_json_records_are_what_the_endpoint_passes() -> None:
    _, records = tiny_model()
    assert len(records) == 300
    assert records[0]["x"] is None and isinstance(records[1]["x"], float)
    assert isinstance(records[0]["c"], str) and set(records[0]) == {"x", "z", "c"}


def test_latency_is_at_least_1000_single_row_calls() -> None:
    model, records = tiny_model()
    counting = Counting(model)
    latency = costs.measure_latency(counting, records)
    assert latency.calls == 1000 == costs.MIN_LATENCY_CALLS
    assert counting.sizes == [1] * (1000 + costs.WARMUP_CALLS)
    assert 0 < latency.p50_ms <= latency.p99_ms < 1000
    with pytest.raises(ValueError, match="at least 1000 calls"):
        costs.measure_latency(model, records, calls=999)


def test_latencies_of_several_models_are_interleaved_in_blocks() -> None:
    model, records = tiny_model()
    calls: list[tuple[str, int]] = []

    class Named(Counting):
        def __init__(self, name: str) -> None:
            super().__init__(model)
            self.name = name

        def predict_records(self, records: Sequence[Mapping[str, Any]]) -> Prediction:
            calls.append((self.name, len(records)))
            return super().predict_records(records)

    a, b = Named("a"), Named("b")
    latencies = costs.measure_latencies([a, b], records, calls=1000, block=50)
    assert [lat.calls for lat in latencies] == [1000, 1000]
    blocks = calls[2 * costs.WARMUP_CALLS:]  # each block: 5 untimed calls, then 50 timed
    per_block = costs.REWARM_CALLS + 50
    assert [name for name, _ in blocks[:2 * per_block + 1]] == (
        ["a"] * per_block + ["b"] * per_block + ["a"])
    assert len(blocks) == 2 * 20 * per_block and {size for _, size in calls} == {1}


def test_throughput_predicts_a_batch_of_1000_records() -> None:
    model, records = tiny_model()
    counting = Counting(model)
    rows_s = costs.measure_throughput(counting, records)
    assert counting.sizes == [1000] * (1 + costs.BATCH_REPEATS)
    assert rows_s > 0


def test_size_is_the_pickled_model() -> None:
    model, _ = tiny_model()
    assert costs.model_size_mb(model) == len(cloudpickle.dumps(model)) / 1e6 > 0


def test_cost_per_million_formula() -> None:
    # 0.36 per hour at 100 rows/s: 360,000 rows an hour, so a million rows cost 1.0.
    assert costs.cost_per_million(0.36, 100.0) == pytest.approx(1.0)
    assert costs.cost_per_million(1.0, 50_000) == pytest.approx(1.0 / (3600 * 50_000) * 1e6)
    assert costs.cost_per_million(1.0, 0.0) == math.inf


def test_measure_everything_with_a_fresh_memory_process() -> None:
    model, records = tiny_model()
    heavy, _ = tiny_model(params={"weights": np.ones(6_000_000)})  # 48 MB more to load
    with costs.MemoryMeter(records, ["lightgbm"]) as meter:
        cost = costs.measure(model, records, instance_price_per_hour=0.36, memory=meter)
        heavy_mb = meter.measure(heavy)
        with pytest.raises(RuntimeError, match="measuring peak memory failed"):
            meter.measure(b"not a pickle")
        assert meter.measure(model) >= 0  # the process survives a failed child
    assert cost.latency_calls == 1000
    assert 0 < cost.latency_p50_ms <= cost.latency_p99_ms
    assert cost.throughput_rows_s > 0 and cost.model_mb > 0
    assert 0 <= cost.memory_mb < 100 and cost.memory_error is None
    assert heavy_mb >= 40 > cost.memory_mb
    assert cost.cost_per_million == pytest.approx(
        0.36 / (3600 * cost.throughput_rows_s) * 1e6)
    assert costs.measure(model, records).cost_per_million is None


def test_probe_keeps_each_rows_fastest_call() -> None:
    seen: set[int] = set()

    def predict_one(i: int) -> None:
        if i not in seen:  # the first call of every row is slow (a noisy neighbour)
            seen.add(i)
            time.sleep(0.003)

    latency = costs.probe_latency_ms(predict_one, rows=50, passes=2, warmup=0)
    assert latency.calls == 100
    assert latency.p99_ms < 1.0
