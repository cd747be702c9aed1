"""deploy/kubernetes: every manifest validated offline against the Kubernetes JSON schemas that
the ``kubernetes-validate`` package ships (strict: an unknown or misspelt field fails), on the
oldest and the newest Kubernetes version we claim; then the wiring the schemas cannot see:
kustomization lists every file, selectors match their pods, probes hit the real endpoints,
settings are real settings, and no secret value is in the repository."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import utils as k8s

from citeqa.config import Settings
from tests.paths import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy" / "kubernetes"
SECRET_SETTINGS = {
    "CITEQA_API_KEYS",
    "CITEQA_WRITE_API_KEYS",
    "CITEQA_LLM_API_KEY",
    "CITEQA_METRICS_TOKEN",
}
VERSIONS = ["1.30.0", k8s.latest_version()]  # oldest supported upstream here, and the newest


def manifest_files() -> list[Path]:
    return sorted(p for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")


def resources() -> list[dict[str, Any]]:
    docs = []
    for path in manifest_files():
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    return docs


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in resources() if doc["kind"] == kind]


def one(kind: str, name: str) -> dict[str, Any]:
    found = [doc for doc in by_kind(kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def schema_errors(doc: dict[str, Any], version: str) -> str | None:
    """None when ``doc`` is valid for ``version`` (strict schemas), else the error."""
    try:
        k8s.validate(doc, version, strict=True)
    except k8s.ValidationError as exc:
        return f"{doc['kind']}/{doc['metadata'].get('name')}: {exc.message} at {list(exc.path)}"
    except k8s.SchemaNotFoundError as exc:
        return exc.message
    return None


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid_for_kubernetes(version: str) -> None:
    docs = resources()
    assert len(docs) >= 8
    errors = [e for e in (schema_errors(doc, version) for doc in docs) if e]
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (["spec", "replicas"], "two"),  # wrong type
        (["spec", "template", "spec", "containers", 0, "readinesProbe"], {}),  # misspelt field
        (["spec", "selector"], None),  # a required field left out
        (["apiVersion"], "extensions/v1beta1"),  # an API removed from Kubernetes
    ],
    ids=["type", "unknown-field", "missing-required", "removed-api"],
)
def test_a_broken_manifest_fails_validation(path: list[Any], value: Any) -> None:
    """The check above can fail: the same Deployment, broken one way at a time."""
    broken = copy.deepcopy(one("Deployment", "citeqa-api"))
    target = broken
    for key in path[:-1]:
        target = target[key]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    assert schema_errors(one("Deployment", "citeqa-api"), VERSIONS[-1]) is None
    assert schema_errors(broken, VERSIONS[-1]) is not None


def test_kustomization_lists_every_manifest_once() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == [p.name for p in manifest_files()]
    assert {image["name"] for image in kustomization["images"]} == {"citeqa"}


def test_the_pieces_asked_for_are_there() -> None:
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in resources()}
    assert {
        ("Deployment", "citeqa-api"),
        ("Service", "citeqa-api"),
        ("HorizontalPodAutoscaler", "citeqa-api"),
        ("StatefulSet", "chroma"),
        ("Service", "chroma"),
        ("Job", "citeqa-ingest"),
        ("ConfigMap", "citeqa-settings"),
    } <= kinds


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    return list(workload["spec"]["template"]["spec"]["containers"])


def test_api_probes_hit_the_real_endpoints() -> None:
    (api,) = containers(one("Deployment", "citeqa-api"))
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["startupProbe"]["httpGet"]["path"] == "/healthz"
    port = api["readinessProbe"]["httpGet"]["port"]
    assert port in {p["name"] for p in api["ports"]}
    assert api["ports"][0]["containerPort"] == Settings().port
    assert api["args"] == ["citeqa", "serve", "--host", "0.0.0.0"]


def test_autoscaler_scales_the_api_deployment_on_what_it_requests() -> None:
    hpa = one("HorizontalPodAutoscaler", "citeqa-api")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "citeqa-api")
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    (api,) = containers(one("Deployment", "citeqa-api"))
    resource = hpa["spec"]["metrics"][0]["resource"]["name"]
    assert resource in api["resources"]["requests"]  # utilisation is relative to the request


def test_services_select_their_pods() -> None:
    for service in by_kind("Service"):
        selector = service["spec"]["selector"].items()
        matched = [
            w
            for w in by_kind("Deployment") + by_kind("StatefulSet")
            if selector <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matched) == 1, service["metadata"]["name"]
        ports = {p["name"] for c in containers(matched[0]) for p in c["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
    for workload in by_kind("Deployment") + by_kind("StatefulSet"):
        labels = workload["spec"]["template"]["metadata"]["labels"].items()
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels


def test_chroma_keeps_its_data_on_a_claim_and_matches_the_client_pin() -> None:
    chroma = one("StatefulSet", "chroma")
    assert chroma["spec"]["replicas"] == 1
    (claim,) = chroma["spec"]["volumeClaimTemplates"]
    (container,) = containers(chroma)
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in container["volumeMounts"]
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    pin = next(d for d in pyproject["project"]["dependencies"] if d.startswith("chromadb=="))
    assert container["image"] == f"chromadb/chroma:{pin.split('==')[1]}"
    url = one("ConfigMap", "citeqa-settings")["data"]["CITEQA_CHROMA_URL"]
    service = one("Service", "chroma")
    assert url == f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    assert chroma["spec"]["serviceName"] == service["metadata"]["name"]


def test_settings_are_real_and_secrets_only_referenced() -> None:
    fields = {f"CITEQA_{name.upper()}" for name in Settings.model_fields}
    settings = one("ConfigMap", "citeqa-settings")["data"]
    assert set(settings) <= fields
    Settings.model_validate({k.removeprefix("CITEQA_").lower(): v for k, v in settings.items()})
    assert not by_kind("Secret")  # no secret value in the repository, not even a placeholder
    for workload in by_kind("Deployment") + by_kind("Job"):
        for container in containers(workload):
            assert {"configMapRef": {"name": "citeqa-settings"}} in container["envFrom"]
            for env in container.get("env", []):
                assert env["name"] in fields
                if env["name"] in SECRET_SETTINGS:
                    assert "value" not in env and env["valueFrom"]["secretKeyRef"]
    (api,) = containers(one("Deployment", "citeqa-api"))
    assert {env["name"] for env in api["env"]} >= SECRET_SETTINGS


def test_ingest_job_ingests_into_the_shared_store() -> None:
    job = one("Job", "citeqa-ingest")
    (container,) = containers(job)
    assert container["args"][:2] == ["citeqa", "ingest"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] in {"Never", "OnFailure"}
    # the API replicas do not ingest at start: the Job is the one writer
    (api,) = containers(one("Deployment", "citeqa-api"))
    corpus = next(e["value"] for e in api["env"] if e["name"] == "CITEQA_CORPUS_PATH")
    assert any(m["mountPath"] == corpus and m.get("readOnly") for m in api["volumeMounts"])


def test_api_replicas_share_the_uploaded_files() -> None:
    """Uploaded originals live in <data_dir>/files, which every replica must see (as the
    compose file's shared volume): one ReadWriteMany claim mounted there by the API pods."""
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    shared = [m.split(":")[1] for m in compose["services"]["api"]["volumes"]]
    deployment = one("Deployment", "citeqa-api")
    (api,) = containers(deployment)
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in deployment["spec"]["template"]["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    }
    mounted = {m["mountPath"]: claims.get(m["name"]) for m in api["volumeMounts"]}
    for path in shared:
        claim = one("PersistentVolumeClaim", str(mounted[path]))
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
