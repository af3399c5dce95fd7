"""What Kubernetes is given: the manifests in deploy/kubernetes, checked offline.

Every document is validated against the API's own schemas, in strict mode so an
unknown or misplaced field fails, for the oldest Kubernetes release the manifests
support and the newest one the pinned validator bundles. The other tests state
what a schema cannot see: probes, secrets, shutdown, migrations, selectors.
"""

from __future__ import annotations

import copy
import socket
import typing
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import SecretStr

from service.api.health import READY_TIMEOUT
from service.config import Settings
from service.store.pool import STARTUP_WAIT

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
KUSTOMIZATION = MANIFESTS / "kustomization.yaml"
EXAMPLE_SECRET = MANIFESTS / "secret.example.yaml"

# The oldest release the manifests support (the preStop sleep action is on by
# default from 1.30), and the newest one the pinned validator bundles.
KUBERNETES_VERSIONS = ("1.30", "1.37")

# Replicate's limits are per account, so every replica's requests share them.
REPLICATE_REQUESTS_PER_MINUTE = 3000
REPLICATE_CREATES_PER_MINUTE = 600

# The settings that are secrets: every SecretStr, and the ops token, which
# protects /healthz, /readyz and /metrics when set.
SECRET_VARIABLES = {
    field.alias
    for field in Settings.model_fields.values()
    if SecretStr in (field.annotation, *typing.get_args(field.annotation))
} | {"TUNEYARD_OPS_TOKEN"}

# Where read-only containers are given a writable scratch folder.
SCRATCH = "/tmp"  # noqa: S108 - a path inside the container, not opened here

Document = dict[str, Any]


def _documents(path: Path) -> list[Document]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _kustomization() -> Document:
    return yaml.safe_load(KUSTOMIZATION.read_text())


def _manifest_files() -> list[Path]:
    return sorted(
        path
        for pattern in ("*.yaml", "*.yml")
        for path in MANIFESTS.glob(pattern)
        if path != KUSTOMIZATION
    )


EVERY_DOCUMENT = [(path, doc) for path in _manifest_files() for doc in _documents(path)]


def _document_id(value: object) -> str:
    if isinstance(value, Path):
        return value.name
    if isinstance(value, dict):
        return f"{value.get('kind')}/{value.get('metadata', {}).get('name')}"
    return str(value)


@pytest.fixture(scope="module")
def applied() -> list[Document]:
    """Every document the kustomization applies."""
    return [
        doc
        for name in _kustomization()["resources"]
        for doc in _documents(MANIFESTS / name)
    ]


def _only(applied: list[Document], kind: str) -> Document:
    found = [doc for doc in applied if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, the kustomization has {len(found)}"
    return found[0]


@pytest.fixture
def deployment(applied: list[Document]) -> Document:
    return _only(applied, "Deployment")


@pytest.fixture
def job(applied: list[Document]) -> Document:
    return _only(applied, "Job")


@pytest.fixture
def service(applied: list[Document]) -> Document:
    return _only(applied, "Service")


@pytest.fixture
def autoscaler(applied: list[Document]) -> Document:
    return _only(applied, "HorizontalPodAutoscaler")


@pytest.fixture
def budget(applied: list[Document]) -> Document:
    return _only(applied, "PodDisruptionBudget")


@pytest.fixture
def config(applied: list[Document]) -> dict[str, str]:
    return _only(applied, "ConfigMap")["data"]


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to reach the network fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("schema validation tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def _pod(workload: Document) -> Document:
    return workload["spec"]["template"]["spec"]


def _containers(workload: Document) -> list[Document]:
    pod = _pod(workload)
    return [*pod.get("initContainers", []), *pod["containers"]]


def _server(deployment: Document) -> Document:
    [container] = _pod(deployment)["containers"]
    return container


def _port(container: Document, port: int | str) -> int:
    """The container port a probe or Service names, by number or by name."""
    if isinstance(port, int):
        return port
    [number] = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return number


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and selector.items() <= labels.items()


def _shutdown_timeout(config: dict[str, str]) -> float:
    default = Settings.model_fields["shutdown_timeout"].default
    return float(config.get("TUNEYARD_SHUTDOWN_TIMEOUT", default))


def _image_user() -> int:
    lines = (ROOT / "deploy" / "Dockerfile").read_text().splitlines()
    return int([line for line in lines if line.startswith("USER")][-1].split()[1])


def test_kustomization_applies_every_manifest_but_the_example_secret() -> None:
    kustomization = _kustomization()

    listed = kustomization["resources"]

    assert kustomization["kind"] == "Kustomization"
    assert len(listed) == len(set(listed))
    assert {MANIFESTS / name for name in listed} == set(_manifest_files()) - {
        EXAMPLE_SECRET
    }


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(("path", "document"), EVERY_DOCUMENT, ids=_document_id)
@pytest.mark.usefixtures("offline")
def test_manifest_matches_the_kubernetes_schema(
    path: Path, document: Document, version: str
) -> None:
    try:
        validated = kubernetes_validate.validate(document, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        field = ".".join(str(part) for part in exc.path)
        pytest.fail(f"{path.name}: {field}: {exc.message}")
    except kubernetes_validate.SchemaNotFoundError as exc:
        pytest.fail(f"{path.name}: {exc.message}")

    assert validated == version


@pytest.mark.usefixtures("offline")
def test_schema_validation_rejects_a_misspelt_field(deployment: Document) -> None:
    misspelt = copy.deepcopy(deployment)
    container = _server(misspelt)
    container["readinessProbes"] = container.pop("readinessProbe")

    with pytest.raises(kubernetes_validate.ValidationError, match="readinessProbes"):
        kubernetes_validate.validate(misspelt, KUBERNETES_VERSIONS[-1], strict=True)


@pytest.mark.parametrize(
    ("probe", "path"),
    [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ],
)
def test_probe_checks_its_endpoint_on_the_port_tuneyard_listens_on(
    deployment: Document, config: dict[str, str], probe: str, path: str
) -> None:
    container = _server(deployment)

    check = container[probe]["httpGet"]

    assert check["path"] == path
    assert _port(container, check["port"]) == int(config["TUNEYARD_PORT"])


def test_liveness_does_not_depend_on_the_database(deployment: Document) -> None:
    container = _server(deployment)

    liveness = container["livenessProbe"]["httpGet"]["path"]

    assert liveness != "/readyz"
    assert liveness != container["readinessProbe"]["httpGet"]["path"]


def test_readiness_probe_outwaits_the_services_own_database_timeout(
    deployment: Document,
) -> None:
    readiness = _server(deployment)["readinessProbe"]

    assert readiness["timeoutSeconds"] > READY_TIMEOUT


def test_startup_probe_allows_for_the_wait_for_the_database(
    deployment: Document,
) -> None:
    startup = _server(deployment)["startupProbe"]

    allowed = startup["periodSeconds"] * startup["failureThreshold"]

    assert allowed > STARTUP_WAIT


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_secret_settings_are_read_from_the_secret(
    applied: list[Document], kind: str
) -> None:
    workload = _only(applied, kind)

    entries = [
        (container["name"], entry)
        for container in _containers(workload)
        for entry in container.get("env", [])
        if entry["name"] in SECRET_VARIABLES
    ]

    assert entries
    for name, entry in entries:
        assert "value" not in entry, f"{name}: {entry['name']} is written inline"
        ref = entry["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "tuneyard-secrets"
        assert ref["key"] == entry["name"]


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_settings_come_only_from_the_config_map_and_the_secret(
    applied: list[Document], kind: str
) -> None:
    workload = _only(applied, kind)

    for container in _containers(workload):
        sources = [next(iter(source)) for source in container.get("envFrom", [])]
        inline = [e["name"] for e in container.get("env", []) if "value" in e]

        assert set(sources) <= {"configMapRef", "secretRef"}
        assert not set(inline) & SECRET_VARIABLES


def test_config_map_holds_no_secret(config: dict[str, str]) -> None:
    assert not set(config) & SECRET_VARIABLES


def test_kustomization_applies_no_secret(applied: list[Document]) -> None:
    kustomization = _kustomization()

    assert "Secret" not in {doc["kind"] for doc in applied}
    assert "secretGenerator" not in kustomization


def test_server_cannot_start_without_the_secrets_serve_needs(
    deployment: Document,
) -> None:
    refs = {
        entry["name"]: entry["valueFrom"]["secretKeyRef"]
        for entry in _server(deployment)["env"]
        if "secretKeyRef" in entry.get("valueFrom", {})
    }

    for required in ("DATABASE_URL", "REPLICATE_API_TOKEN"):
        assert not refs[required].get("optional", False)


def test_example_secret_documents_the_keys_read_with_fake_values(
    applied: list[Document],
) -> None:
    [example] = _documents(EXAMPLE_SECRET)
    read = {
        entry["valueFrom"]["secretKeyRef"]["key"]
        for doc in applied
        if doc["kind"] in ("Deployment", "Job")
        for container in _containers(doc)
        for entry in container.get("env", [])
        if "secretKeyRef" in entry.get("valueFrom", {})
    }

    values = example["stringData"]

    assert example["kind"] == "Secret"
    assert example["metadata"]["name"] == "tuneyard-secrets"
    assert set(values) == read
    assert all("REPLACE-ME" in value for value in values.values())


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_containers_run_unprivileged_as_the_images_user(
    applied: list[Document], kind: str
) -> None:
    workload = _only(applied, kind)
    pod = _pod(workload)

    for container in _containers(workload):
        context = {**pod.get("securityContext", {}), **container["securityContext"]}

        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == _image_user() == 10001
        assert context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not context.get("privileged", False)


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_read_only_containers_get_a_writable_tmp(
    applied: list[Document], kind: str
) -> None:
    workload = _only(applied, kind)
    volumes = {volume["name"]: volume for volume in _pod(workload)["volumes"]}

    for container in _containers(workload):
        [tmp] = [m for m in container["volumeMounts"] if m["mountPath"] == SCRATCH]

        assert "emptyDir" in volumes[tmp["name"]]


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_pods_get_no_kubernetes_api_token_and_no_service_links(
    applied: list[Document], kind: str
) -> None:
    account = _only(applied, "ServiceAccount")
    pod = _pod(_only(applied, kind))

    assert pod["serviceAccountName"] == account["metadata"]["name"]
    assert account["automountServiceAccountToken"] is False
    assert pod["automountServiceAccountToken"] is False
    # A Service named tuneyard would otherwise set TUNEYARD_PORT=tcp://...
    assert pod["enableServiceLinks"] is False


def test_termination_grace_outlasts_the_graceful_shutdown(
    deployment: Document, config: dict[str, str]
) -> None:
    timeout = _shutdown_timeout(config)
    pre_stop = _server(deployment)["lifecycle"]["preStop"]["sleep"]["seconds"]

    grace = _pod(deployment)["terminationGracePeriodSeconds"]

    # Requests in flight get the timeout, then the workers' items get it again.
    assert 0 < pre_stop < timeout
    assert grace > pre_stop + 2 * timeout


@pytest.mark.parametrize("runner", ["job", "init container"])
def test_migrations_run_with_the_servers_image_and_settings(
    deployment: Document, job: Document, runner: str
) -> None:
    server = _server(deployment)
    if runner == "job":
        [migrate] = _pod(job)["containers"]
    else:
        [migrate] = _pod(deployment)["initContainers"]

    server_env = {entry["name"]: entry for entry in server["env"]}

    assert migrate["args"] == ["migrate"]
    assert migrate["image"] == server["image"]
    assert migrate["envFrom"] == server["envFrom"]
    assert "DATABASE_URL" in {entry["name"] for entry in migrate["env"]}
    for entry in migrate["env"]:
        assert server_env[entry["name"]] == entry


def test_migration_job_retries_then_cleans_up_after_itself(job: Document) -> None:
    spec = job["spec"]

    assert _pod(job)["restartPolicy"] in ("Never", "OnFailure")
    assert spec["backoffLimit"] >= 1
    assert spec["ttlSecondsAfterFinished"] > 0


def test_every_container_runs_the_image_the_kustomization_sets(
    applied: list[Document],
) -> None:
    [image] = _kustomization()["images"]

    used = {
        container["image"]
        for doc in applied
        if doc["kind"] in ("Deployment", "Job")
        for container in _containers(doc)
    }

    assert len(used) == 1
    assert used.pop().split(":")[0] == image["name"]


def test_autoscaler_scales_the_deployment(
    autoscaler: Document, deployment: Document
) -> None:
    spec = autoscaler["spec"]

    target = spec["scaleTargetRef"]
    [metric] = spec["metrics"]

    assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment")
    assert target["name"] == deployment["metadata"]["name"]
    assert 2 <= spec["minReplicas"] < spec["maxReplicas"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] > 0


def test_deployment_leaves_its_replica_count_to_the_autoscaler(
    deployment: Document,
) -> None:
    assert "replicas" not in deployment["spec"]


def test_disruption_budget_covers_the_servers_pods_and_lets_nodes_drain(
    budget: Document, deployment: Document, autoscaler: Document
) -> None:
    spec = budget["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]

    assert spec["selector"] == deployment["spec"]["selector"]
    assert _selects(spec["selector"]["matchLabels"], labels)
    if "maxUnavailable" in spec:
        assert spec["maxUnavailable"] >= 1
    else:
        assert spec["minAvailable"] < autoscaler["spec"]["minReplicas"]


def test_service_sends_traffic_to_the_port_tuneyard_listens_on(
    service: Document, deployment: Document, config: dict[str, str]
) -> None:
    [port] = service["spec"]["ports"]

    target = _port(_server(deployment), port["targetPort"])

    assert service["spec"]["type"] == "ClusterIP"
    assert (port["name"], port["port"]) == ("http", 80)
    assert target == int(config["TUNEYARD_PORT"])


def test_selectors_match_the_servers_pods(
    deployment: Document, service: Document
) -> None:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    spreads = _pod(deployment)["topologySpreadConstraints"]

    selectors = [
        deployment["spec"]["selector"]["matchLabels"],
        service["spec"]["selector"],
        *(spread["labelSelector"]["matchLabels"] for spread in spreads),
    ]

    for selector in selectors:
        assert _selects(selector, labels), selector


def test_migration_pods_get_no_traffic_and_no_budget(
    job: Document, service: Document, budget: Document
) -> None:
    labels = job["spec"]["template"]["metadata"]["labels"]

    assert not _selects(service["spec"]["selector"], labels)
    assert not _selects(budget["spec"]["selector"]["matchLabels"], labels)


def test_rollout_keeps_every_pod_until_its_replacement_is_ready(
    deployment: Document,
) -> None:
    strategy = deployment["spec"]["strategy"]

    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}


def test_pods_spread_across_nodes(deployment: Document) -> None:
    spreads = _pod(deployment)["topologySpreadConstraints"]

    by_key = {spread["topologyKey"]: spread for spread in spreads}

    assert by_key["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"
    assert by_key["kubernetes.io/hostname"]["maxSkew"] == 1


def test_prometheus_scrapes_the_metrics_endpoint(
    deployment: Document, config: dict[str, str]
) -> None:
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]

    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert annotations["prometheus.io/port"] == config["TUNEYARD_PORT"]


def test_config_map_holds_settings_tuneyard_accepts(config: dict[str, str]) -> None:
    known = {field.alias for field in Settings.model_fields.values()}

    settings = Settings(_env_file=None, **config)  # type: ignore[call-arg]

    assert set(config) <= known
    assert settings.host == "0.0.0.0"
    assert settings.log_format == "json"


def test_base_leaves_the_public_url_for_the_operator_to_set(
    config: dict[str, str],
) -> None:
    settings = Settings(_env_file=None, **config)  # type: ignore[call-arg]

    # A sample URL here would send Replicate's webhooks to it, unnoticed; unset,
    # `tuneyard serve` refuses to start and names the variable.
    assert "TUNEYARD_PUBLIC_URL" in config
    assert settings.public_url is None


def test_callbacks_go_only_to_listed_hosts(config: dict[str, str]) -> None:
    settings = Settings(_env_file=None, **config)  # type: ignore[call-arg]

    assert settings.allowed_callback_hosts


def test_replicate_rate_limits_fit_the_account_at_full_scale(
    config: dict[str, str], autoscaler: Document, deployment: Document
) -> None:
    settings = Settings(_env_file=None, **config)  # type: ignore[call-arg]
    surge = deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"]

    most_pods = autoscaler["spec"]["maxReplicas"] + surge

    assert settings.replicate_rate_limit * most_pods <= REPLICATE_REQUESTS_PER_MINUTE
    assert (
        settings.replicate_create_rate_limit * most_pods <= REPLICATE_CREATES_PER_MINUTE
    )
