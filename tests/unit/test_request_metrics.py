"""The request counters and histogram, as Prometheus scrapes them."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from service.metrics import RequestMetrics


def scraped(requests: RequestMetrics) -> dict[tuple[str, frozenset], float]:
    registry = CollectorRegistry()
    registry.register(requests)
    text = generate_latest(registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_answers_are_counted_by_method_route_and_status() -> None:
    requests = RequestMetrics()
    requests.observe("POST", "/webhooks/replicate", 200, 0.002)
    requests.observe("POST", "/webhooks/replicate", 200, 0.004)
    requests.observe("POST", "/webhooks/replicate", 503, 0.5)

    samples = scraped(requests)

    def answered(status: str) -> float:
        labels = {"method": "POST", "route": "/webhooks/replicate", "status": status}
        return samples[("tuneyard_http_requests_total", frozenset(labels.items()))]

    assert answered("200") == 2
    assert answered("503") == 1


def test_durations_fill_cumulative_buckets_bounds_inclusive() -> None:
    requests = RequestMetrics()
    for seconds in (0.005, 0.0051, 0.3, 60.0):
        requests.observe("GET", "/v1/trainings", 200, seconds)

    samples = scraped(requests)
    route = {"method": "GET", "route": "/v1/trainings"}

    def bucket(le: str) -> float:
        labels = frozenset({**route, "le": le}.items())
        return samples[("tuneyard_http_request_duration_seconds_bucket", labels)]

    # 0.005 is in the 0.005 bucket (le means <=); 0.0051 is not.
    assert bucket("0.005") == 1
    assert bucket("0.01") == 2
    assert bucket("0.25") == 2
    assert bucket("0.5") == 3
    assert bucket("10.0") == 3
    assert bucket("+Inf") == 4
    labels = frozenset(route.items())
    assert samples[("tuneyard_http_request_duration_seconds_count", labels)] == 4
    total = samples[("tuneyard_http_request_duration_seconds_sum", labels)]
    assert abs(total - 60.3101) < 1e-9


def test_unknown_methods_share_one_label() -> None:
    requests = RequestMetrics()
    for method in ("FROB", "X" * 40, "BREW"):
        requests.observe(method, "unmatched", 405, 0.001)

    samples = scraped(requests)

    answered = [
        dict(labels)["method"]
        for name, labels in samples
        if name == "tuneyard_http_requests_total"
    ]
    assert answered == ["other"]
    labels = frozenset(
        {"method": "other", "route": "unmatched", "status": "405"}.items()
    )
    assert samples[("tuneyard_http_requests_total", labels)] == 3
