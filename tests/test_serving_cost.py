"""Serving-path costs (dripml.refine.serving_cost): the pure parts, fast. The real server is
measured in tests/test_refine_by_cost.py, inside a Refine that already runs."""

from __future__ import annotations

import math

import pytest

from dripml.core.costs import ServingCost
from dripml.refine import frontier, serving_cost


def test_servers_share_the_cpus_only_when_each_gets_a_slot() -> None:
    assert serving_cost.cpu_slots(1, [0, 1]) == [((0,), (1,))]  # 2 cores: one at a time
    assert serving_cost.cpu_slots(2, [0, 1]) == [((0, 1), ())]  # the client is unpinned
    assert serving_cost.cpu_slots(1, [0, 1, 2, 3]) == [((0,), (1,)), ((2,), (3,))]
    assert serving_cost.cpu_slots(3, range(8)) == [((0, 1, 2), (3,)), ((4, 5, 6), (7,))]


def test_endpoint_figures_become_the_costs_and_in_process_ones_stay() -> None:
    inproc = ServingCost(latency_p50_ms=0.3, latency_p99_ms=0.5, throughput_rows_s=50_000,
                         model_mb=0.1, memory_mb=5.0, cost_per_million=0.001)
    endpoint = serving_cost.EndpointCost(1.4, 2.2, 400.0, 30.0, concurrency=8, requests=900,
                                         rss_mb=310.0, ready_s=6.0)
    cost = serving_cost.with_endpoint(inproc, endpoint, instance_price_per_hour=0.36)
    assert (cost.latency_p50_ms, cost.latency_p99_ms) == (1.4, 2.2)
    assert (cost.inproc_latency_p50_ms, cost.inproc_latency_p99_ms) == (0.3, 0.5)
    # 0.36 per hour / (3600 s x 400 requests/s) x 1e6 = 0.25 per million requests
    assert cost.cost_per_million == pytest.approx(0.25)
    values = frontier.measured(cost)
    assert values["requests_per_s"] == 400.0 and values["inproc_latency_p99_ms"] == 0.5
    failed = serving_cost.EndpointCost(math.inf, math.inf, 0.0, math.inf, 8, 0, error="boom")
    broken = serving_cost.with_endpoint(inproc, failed, None)
    assert broken.latency_p99_ms == math.inf and broken.serving_error == "boom"
    assert broken.cost_per_million == 0.001  # no price given: the in-process one stays
