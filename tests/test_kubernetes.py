"""deploy/kubernetes/ without a cluster: every manifest against Kubernetes' OpenAPI schemas, and what must hold.

No cluster is reachable in CI, so the manifests are checked, not applied: each resource is validated in strict
mode (an unknown or misspelt field fails, as `kubectl apply --validate=strict` would) by kubernetes-validate
against the schemas it ships for the versions pinned below; then the properties a schema cannot know: probes on
/health, the token from a Secret only, resources and a locked-down security context on every container, the HPA
on the serve Deployment, one consumer group for the stream replicas, the retrain CronJob never running twice at
once, every image built by one of our Dockerfiles, and every command line one that our CLI accepts.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import kubernetes_validate
import pytest
import yaml

from conftest import REPO

MANIFESTS = REPO / "deploy" / "kubernetes"
# kubernetes-validate ships the schemas of 1.25 to 1.37 (constraints.txt pins it): the oldest version we support
# (CronJob's timeZone is GA since 1.27) and the newest it knows, where an API removed since would fail.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
NOT_APPLIED = {"kustomization.yaml", "secret.example.yaml"}  # kustomize's own file; the Secret is made by hand
SECRET_NAMES = re.compile(r"TOKEN|PASSWORD|SECRET|KEY", re.IGNORECASE)


def _documents() -> list[tuple[str, dict[str, Any]]]:
    return [(path.name, document) for path in sorted(MANIFESTS.glob("*.yaml"))
            for document in yaml.safe_load_all(path.read_text()) if document]


DOCUMENTS = _documents()
APPLIED = [(name, document) for name, document in DOCUMENTS if name not in NOT_APPLIED]


def resource(kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for _, d in APPLIED if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return workload["spec"]["template"]["spec"]


def pod_template(workload: dict[str, Any]) -> dict[str, Any]:
    spec = workload["spec"]["jobTemplate"]["spec"] if workload["kind"] == "CronJob" else workload["spec"]
    return spec["template"]


WORKLOADS = [d for _, d in APPLIED if d["kind"] in ("Deployment", "CronJob", "Job", "StatefulSet", "DaemonSet")]
CONTAINERS = [(w["metadata"]["name"], c) for w in WORKLOADS
              for c in pod_spec(w).get("initContainers", []) + pod_spec(w)["containers"]]
SERVE = resource("Deployment", "visiontrain-serve")
STREAM = resource("Deployment", "visiontrain-stream")
RETRAIN = resource("CronJob", "visiontrain-retrain")


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (only,) = pod_spec(workload)["containers"]
    return only


def overrides(workload: dict[str, Any]) -> dict[str, str]:
    """key -> value of the container's key=value arguments (after the command)."""
    return dict(arg.split("=", 1) for arg in container(workload)["args"][1:])


def port_number(workload: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container(workload)["ports"] if p["name"] == port]
    return number


def conf(command: str) -> dict[str, Any]:
    return yaml.safe_load((REPO / "conf" / f"{command}.yaml").read_text())


# ----- the schemas -------------------------------------------------------------------------------------------

def test_kustomization_applies_every_manifest_but_the_secret_example():
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text())
    files = {path.name for path in MANIFESTS.glob("*.yaml")} - NOT_APPLIED
    assert sorted(kustomization["resources"]) == sorted(files), "kustomization.yaml must list every manifest"
    assert "secret.example.yaml" not in kustomization["resources"], "the token Secret is created by hand"
    namespaces = [d["metadata"]["name"] for _, d in APPLIED if d["kind"] == "Namespace"]
    assert namespaces == [kustomization["namespace"]]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("name, document", [(n, d) for n, d in DOCUMENTS if n != "kustomization.yaml"],
                         ids=lambda value: value if isinstance(value, str) else
                         f"{value['kind']}-{value['metadata']['name']}")
def test_every_manifest_is_valid_kubernetes_in_strict_mode(name, document, version):
    try:
        kubernetes_validate.validate(document, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = ".".join(str(part) for part in error.path)
        pytest.fail(f"{name}: {document['kind']} {document['metadata']['name']} is not valid Kubernetes "
                    f"{error.version}: {where}: {error.message}")


def test_strict_validation_refuses_a_misspelt_field():
    """What the check is worth: a typo that kubectl's client-side default would drop silently fails here."""
    broken = copy.deepcopy(SERVE)
    probe = container(broken).pop("readinessProbe")
    container(broken)["readinesProbe"] = probe
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


# ----- serve -----------------------------------------------------------------------------------------------

def test_serve_probes_health_on_port_8000():
    serve = container(SERVE)
    port = int(overrides(SERVE)["port"])
    assert port == 8000 and [p["containerPort"] for p in serve["ports"]] == [port]
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = serve[kind]["httpGet"]
        assert probe["path"] == "/health", f"{kind}: GET /health is the path open without the token"
        assert port_number(SERVE, probe["port"]) == port, kind
    assert overrides(SERVE)["host"] == "0.0.0.0", "the default host, 127.0.0.1, is unreachable from the kubelet"


def test_the_token_comes_from_a_secret_and_never_a_literal_value():
    secret = next(d for n, d in DOCUMENTS if n == "secret.example.yaml")
    env = {e["name"]: e for e in container(SERVE)["env"]}
    reference = env["VISIONTRAIN_SERVE_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert reference["name"] == secret["metadata"]["name"] and reference["key"] in secret["stringData"]
    assert not reference.get("optional"), "without the Secret the pods must not start unauthenticated"
    for workload, spec in CONTAINERS:
        for variable in spec.get("env", []):
            if SECRET_NAMES.search(variable["name"]):
                assert "value" not in variable and "secretKeyRef" in variable.get("valueFrom", {}), (
                    f"{workload}: {variable['name']} must come from a Secret (secretKeyRef), never a literal")
        for arg in spec.get("args", []) + spec.get("command", []):
            assert not re.match(r"\+?(token|password|api_key)\w*=", arg, re.IGNORECASE), f"{workload}: {arg}"


def test_the_secret_example_holds_no_usable_token():
    """Applied by mistake as it is, the example would stop serve (a token too short, with spaces), never guard it."""
    from visiontrain.deploy.access import TOKEN_ENV, load_token
    from visiontrain.errors import ConfigError

    secret = next(d for n, d in DOCUMENTS if n == "secret.example.yaml")
    assert "data" not in secret, "no base64 values: stringData with a placeholder only"
    (placeholder,) = secret["stringData"].values()
    with pytest.raises(ConfigError):
        load_token(None, {TOKEN_ENV: placeholder})


def test_rollouts_let_requests_in_flight_finish():
    strategy = SERVE["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate" and strategy["rollingUpdate"]["maxUnavailable"] == 0
    spec = pod_spec(SERVE)
    sleep = container(SERVE)["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "sleep", "preStop: keep serving while the endpoint removal propagates"
    read_timeout = overrides(SERVE).get("read_timeout_s", conf("serve")["read_timeout_s"])
    assert spec["terminationGracePeriodSeconds"] >= int(sleep[1]) + int(read_timeout), (
        "the grace period must cover the preStop sleep and a request still arriving")
    annotations = pod_template(SERVE)["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == int(overrides(SERVE)["port"])


def test_the_autoscaler_owns_the_serve_deployment_and_the_budget_keeps_one():
    hpa = resource("HorizontalPodAutoscaler", "visiontrain-serve")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment",
                                                                      SERVE["metadata"]["name"])
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu" and metric["resource"]["target"]["type"] == "Utilization"
    assert "cpu" in container(SERVE)["resources"]["requests"], "CPU utilization is a share of the request"
    assert "replicas" not in SERVE["spec"], "the HPA owns replicas; a value would reset it on every apply"
    labels = pod_template(SERVE)["metadata"]["labels"]
    budget = resource("PodDisruptionBudget", "visiontrain-serve")
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert budget["spec"]["minAvailable"] < hpa["spec"]["minReplicas"], "a drain must be able to proceed"
    service = resource("Service", "visiontrain-serve")
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port_number(SERVE, port["targetPort"]) == int(overrides(SERVE)["port"])


def test_the_registry_is_read_only_for_serve_and_read_write_for_retrain():
    claim = resource("PersistentVolumeClaim", "visiontrain-registry")
    assert "ReadWriteMany" in claim["spec"]["accessModes"], "replicas on many nodes, and one writer"
    for workload, writable in ((SERVE, False), (RETRAIN, True)):
        (volume,) = [v for v in pod_spec(workload)["volumes"]
                     if v.get("persistentVolumeClaim", {}).get("claimName") == claim["metadata"]["name"]]
        (mount,) = [m for m in container(workload)["volumeMounts"] if m["name"] == volume["name"]]
        assert mount["mountPath"] == overrides(workload)["registry"] == "/registry"
        assert bool(mount.get("readOnly")) is not writable, workload["metadata"]["name"]
        assert bool(volume["persistentVolumeClaim"].get("readOnly")) is not writable, workload["metadata"]["name"]


# ----- every container -----------------------------------------------------------------------------------

@pytest.mark.parametrize("workload, spec", CONTAINERS, ids=[f"{w}-{c['name']}" for w, c in CONTAINERS])
def test_every_container_has_resources_and_runs_locked_down(workload, spec):
    resources = spec["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys(), f"{workload}: requests"
    assert "memory" in resources["limits"] and "cpu" in resources["limits"], f"{workload}: limits"
    context = spec["securityContext"]
    assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    owner = next(w for w in WORKLOADS if w["metadata"]["name"] == workload)
    pod = pod_spec(owner)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 1000
    assert pod["automountServiceAccountToken"] is False, "visiontrain never calls the Kubernetes API"
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in spec["volumeMounts"]}
    for path in ("/tmp", "/app/cache", "/app/outputs"):  # what the image writes (Dockerfiles' ENV)
        assert path in mounts and "emptyDir" in volumes[mounts[path]["name"]], (
            f"{workload}: a read-only root file system needs a writable volume at {path}")
    assert all(m["name"] in volumes for m in spec["volumeMounts"])


def _dockerfile_images() -> dict[str, str]:
    """image name -> the Dockerfile that builds it, from the build commands in the Dockerfiles' headers
    (`docker build [-f <file>] ... -t <name> .`; without -f, docker builds ./Dockerfile)."""
    images = {}
    for dockerfile in ("Dockerfile", "Dockerfile.cuda"):
        for line in (REPO / dockerfile).read_text().splitlines():
            if line.startswith("#") and "docker build" in line:
                built_from = re.search(r"-f (\S+)", line)
                images[re.search(r"-t (\S+)", line).group(1)] = built_from.group(1) if built_from else "Dockerfile"
    return images


def test_every_image_is_one_our_dockerfiles_build():
    images = _dockerfile_images()
    assert images["visiontrain:serve"] == "Dockerfile" and images["visiontrain:cuda"] == "Dockerfile.cuda"
    for workload, spec in CONTAINERS:
        assert spec["image"] in images, f"{workload}: {spec['image']} is built by neither Dockerfile ({images})"
    assert container(SERVE)["image"] == container(STREAM)["image"] == "visiontrain:serve", "the slim CPU image"


def test_every_command_line_is_one_the_cli_accepts():
    from visiontrain.cli import COMMANDS

    for workload, spec in CONTAINERS:
        command, *arguments = spec["args"]
        assert "command" not in spec, f"{workload}: the image's ENTRYPOINT is visiontrain; give args only"
        assert command in COMMANDS, f"{workload}: `visiontrain {command}` is not a command ({', '.join(COMMANDS)})"
        options = conf(COMMANDS[command].config)
        for argument in arguments:
            key, equals, _ = argument.partition("=")
            assert equals, f"{workload}: {argument!r} is not key=value"
            assert _has_key(options, key.split(".")), f"{workload}: `{command}` has no key {key!r} " \
                                                      f"(conf/{command}.yaml)"


def _has_key(options: Any, parts: list[str]) -> bool:
    """``data.source`` exists only where ``data`` is a section that has ``source`` (retrain's ``data`` is a path)."""
    for part in parts:
        if not isinstance(options, dict) or part not in options:
            return False
        options = options[part]
    return True


# ----- stream and retrain --------------------------------------------------------------------------------

def test_stream_replicas_share_one_consumer_group():
    assert STREAM["spec"]["replicas"] > 1
    group = [arg for arg in container(STREAM)["args"] if arg.startswith("group=")]
    assert len(group) == 1 and "$(" not in group[0], "one literal group id: a per-pod value would split the group"
    assert [d for d in WORKLOADS if container(d)["args"][0] == "stream"] == [STREAM]
    settings = overrides(STREAM)
    assert settings["source"].startswith("kafka://") and settings["output"].startswith("kafka://")
    port = int(settings["metrics_port"])
    assert port == 9108 and settings["metrics_host"] == "0.0.0.0", "Prometheus scrapes from outside the pod"
    assert [p["containerPort"] for p in container(STREAM)["ports"]] == [port]
    assert int(pod_template(STREAM)["metadata"]["annotations"]["prometheus.io/port"]) == port
    flush = int(settings.get("flush_timeout_s", conf("stream")["flush_timeout_s"]))
    assert pod_spec(STREAM)["terminationGracePeriodSeconds"] >= flush + 30, (
        "SIGTERM finishes the batch, waits up to flush_timeout_s for acknowledgements, then commits")


def test_the_retrain_cronjob_never_overlaps_and_keeps_its_history_short():
    spec = RETRAIN["spec"]
    assert spec["concurrencyPolicy"] == "Forbid", "two retrains would write the registry at once"
    assert spec["successfulJobsHistoryLimit"] >= 1 and spec["failedJobsHistoryLimit"] >= 1
    job = spec["jobTemplate"]["spec"]
    assert 0 <= job["backoffLimit"] <= 3 and job["activeDeadlineSeconds"] > 0
    assert pod_spec(RETRAIN)["restartPolicy"] == "Never"
    retrain = container(RETRAIN)
    assert retrain["image"] == "visiontrain:cuda", "the training image (torch): the slim one cannot train"
    assert retrain["args"][0] == "retrain"
    settings = overrides(RETRAIN)
    assert settings["model"] == overrides(SERVE)["model"], "retrain the model that serve serves"
    assert settings["promote_to"] == "candidate", "a person promotes to production"
    data_mount = next(m for m in retrain["volumeMounts"] if settings["data"].startswith(m["mountPath"] + "/"))
    assert data_mount["readOnly"] is True
