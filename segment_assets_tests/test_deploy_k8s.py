"""The Kubernetes deployment files, checked with Dagster's own code (no cluster, no Docker engine
here): deploy/helm/values.yaml rendered the way Dagster's Helm chart renders it, loaded as a
Dagster instance (storage on a real PostgreSQL, the K8sRunLauncher built), the run pod the
launcher would create, and the code location the image serves.

The render functions mirror the chart's templates for the values this project sets:
helm/dagster/templates/configmap-instance.yaml and helpers/instance/*.tpl (the instance), and
charts/dagster-user-deployments/templates/helpers/_helpers.tpl `k8sContainerContext` (what
includeConfigInLaunchedRuns hands to run pods).

What this proves: that the instance and run-pod configuration the values *mean* (as mirrored
here) load in Dagster's own classes (every section validated against its config schema, the
storage answering on PostgreSQL, the run pod carrying the secret, volume and resources), and
that the image serves the module the chart names. What it cannot prove: that the chart renders
these values that way, or accepts them. `helm` is not installed here (no Debian package; PyPI
has only wrappers of the binary), the chart is not available offline, and dagster-k8s ships no
chart or values schema; a key in values.yaml that the chart names differently but the mirror
reads would pass. Check that with `helm template dagster dagster/dagster -f deploy/helm/values.yaml` (the chart's
values.schema.json validates the file) before a release.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import DagsterInstance, DagsterRun

from segment_assets_tests.services import PG_SCHEME, PROJECT_ROOT, Postgres, postgres_server

DEPLOY = PROJECT_ROOT / "deploy"
VALUES = DEPLOY / "helm" / "values.yaml"
RELEASE, NAMESPACE = "dagster", "dagster"
SECRET = "segment-api-token"


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return yaml.safe_load(VALUES.read_text())


@pytest.fixture(scope="module")
def deployment(values: dict[str, Any]) -> dict[str, Any]:
    [only] = values["dagster-user-deployments"]["deployments"]
    return only


def render_postgres_db(values: dict[str, Any]) -> dict[str, Any]:
    pg = values["postgresql"]
    rendered = {
        "username": pg["postgresqlUsername"],
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": pg["postgresqlHost"],
        "db_name": pg["postgresqlDatabase"],
        "port": pg["service"]["port"],
        "params": pg.get("postgresqlParams") or {},
    }
    if pg.get("postgresqlScheme"):
        rendered["scheme"] = pg["postgresqlScheme"]
    return rendered


def render_instance(values: dict[str, Any], kubeconfig: Path) -> dict[str, Any]:
    """dagster.yaml as the chart's instance ConfigMap holds it; `kubeconfig` stands in for the
    in-cluster credentials a pod has (load_incluster_config), the one change from the chart."""
    storage = {"postgres_db": render_postgres_db(values)}
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    launcher_config: dict[str, Any] = {
        "load_incluster_config": False,
        "kubeconfig_file": str(kubeconfig),
        "job_namespace": launcher.get("jobNamespace") or NAMESPACE,
        "image_pull_policy": launcher["imagePullPolicy"],
        "service_account_name": RELEASE,
        "dagster_home": {"env": "DAGSTER_HOME"},
        "instance_config_map": {"env": "DAGSTER_K8S_INSTANCE_CONFIG_MAP"},
        "postgres_password_secret": {"env": "DAGSTER_K8S_PG_PASSWORD_SECRET"},
        "env_config_maps": [{"env": "DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP"}]
        + [c["name"] for c in launcher.get("envConfigMaps") or []],
    }
    for key, snake in (("envSecrets", "env_secrets"),):
        if launcher.get(key):
            launcher_config[snake] = [s["name"] for s in launcher[key]]
    for key, snake in (
        ("envVars", "env_vars"),
        ("volumeMounts", "volume_mounts"),
        ("volumes", "volumes"),
        ("resources", "resources"),
        ("securityContext", "security_context"),
        ("labels", "labels"),
    ):
        if launcher.get(key):
            launcher_config[snake] = launcher[key]
    if launcher.get("runK8sConfig"):
        names = {
            "containerConfig": "container_config",
            "podSpecConfig": "pod_spec_config",
            "podTemplateSpecMetadata": "pod_template_spec_metadata",
            "jobSpecConfig": "job_spec_config",
            "jobMetadata": "job_metadata",
        }
        launcher_config["run_k8s_config"] = {names[k]: v for k, v in launcher["runK8sConfig"].items()}
    concurrency = values["concurrency"]
    instance: dict[str, Any] = {
        "scheduler": {"module": "dagster._core.scheduler", "class": "DagsterDaemonScheduler"},
        "schedule_storage": {
            "module": "dagster_postgres.schedule_storage",
            "class": "PostgresScheduleStorage",
            "config": storage,
        },
        "run_storage": {"module": "dagster_postgres.run_storage", "class": "PostgresRunStorage", "config": storage},
        "event_log_storage": {
            "module": "dagster_postgres.event_log",
            "class": "PostgresEventLogStorage",
            "config": storage,
        },
        "run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": launcher_config},
        "run_coordinator": {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"},
        "concurrency": {
            "pools": {"default_limit": concurrency["pools"]["defaultLimit"]},
            "runs": {"max_concurrent_runs": concurrency["runs"]["maxConcurrentRuns"]},
        },
        "telemetry": {"enabled": values["telemetry"]["enabled"]},
    }
    if values.get("pythonLogs", {}).get("pythonLogLevel"):
        instance["python_logs"] = {"python_log_level": values["pythonLogs"]["pythonLogLevel"]}
    return instance


def render_user_container_context(deployment: dict[str, Any]) -> dict[str, Any]:
    """DAGSTER_CLI_API_GRPC_CONTAINER_CONTEXT of the user deployment (includeConfigInLaunchedRuns)."""
    k8s: dict[str, Any] = {
        "image_pull_policy": deployment["image"]["pullPolicy"],
        "env_config_maps": [f"{RELEASE}-dagster-user-deployments-{deployment['name']}-user-env"]
        + [c["name"] for c in deployment.get("envConfigMaps") or []],
        "namespace": NAMESPACE,
        "service_account_name": f"{RELEASE}-dagster-user-deployments-user-deployments",
        "run_k8s_config": {"pod_spec_config": {"automount_service_account_token": True}},
    }
    if deployment.get("envSecrets"):
        k8s["env_secrets"] = [s["name"] for s in deployment["envSecrets"]]
    for key, snake in (
        ("volumeMounts", "volume_mounts"),
        ("volumes", "volumes"),
        ("labels", "labels"),
        ("resources", "resources"),
    ):
        if deployment.get(key):
            k8s[snake] = deployment[key]
    if isinstance(deployment.get("env"), list):
        k8s["env"] = deployment["env"]
    return {"k8s": k8s}


@pytest.fixture
def kubeconfig(tmp_path: Path) -> Path:
    # A syntactically complete kubeconfig for an API server that is never contacted.
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "test",
                "clusters": [{"name": "test", "cluster": {"server": "https://127.0.0.1:1"}}],
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test", "namespace": NAMESPACE}}],
                "users": [{"name": "test", "user": {"token": "unused"}}],
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def pg() -> Iterator[Postgres]:
    with postgres_server() as server:
        yield server


@pytest.mark.postgres
def test_values_render_an_instance_dagster_loads(
    values: dict[str, Any],
    deployment: dict[str, Any],
    pg: Postgres,
    kubeconfig: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from dagster_k8s import K8sRunLauncher, construct_dagster_k8s_job
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_postgres import PostgresRunStorage
    from kubernetes.client import ApiClient

    assert values["postgresql"]["postgresqlScheme"] == PG_SCHEME
    instance_yaml = render_instance(values, kubeconfig)
    for section in ("run_storage", "event_log_storage", "schedule_storage"):  # the cluster's database -> ours
        instance_yaml[section]["config"]["postgres_db"].update(
            hostname=pg.host, port=pg.port, username=pg.user, db_name=pg.database
        )
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(instance_yaml))
    for name, value in {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_PASSWORD": "unused-trust-auth",
        "DAGSTER_K8S_INSTANCE_CONFIG_MAP": f"{RELEASE}-instance",
        "DAGSTER_K8S_PG_PASSWORD_SECRET": values["global"]["postgresqlSecretName"],
        "DAGSTER_K8S_PIPELINE_RUN_ENV_CONFIGMAP": f"{RELEASE}-pipeline-env",
    }.items():
        monkeypatch.setenv(name, value)

    with DagsterInstance.get() as instance:  # validates every section against its class's config schema
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert instance.get_runs(limit=1) == []  # the storage answers: the schema was created in Postgres
        launcher = instance.run_launcher
        assert isinstance(launcher, K8sRunLauncher)
        assert launcher.job_namespace == NAMESPACE
        assert instance.python_log_level == "INFO"

        # The run pod, as the launcher builds it for a run of this code location.
        run = DagsterRun(job_name="segment_config", run_id=str(uuid.uuid4()))
        context = launcher.get_container_context_for_run(run).merge(
            K8sContainerContext.create_from_config(render_user_container_context(deployment))
        )
        image = f"{deployment['image']['repository']}:{deployment['image']['tag']}"
        job = construct_dagster_k8s_job(
            job_config=context.get_k8s_job_config(job_image=image, run_launcher=launcher),
            args=["dagster", "api", "execute_run", "{}"],
            job_name="dagster-run-test",
            component="run_worker",
            user_defined_k8s_config=context.run_k8s_config,
        )
    pod = ApiClient().sanitize_for_serialization(job)["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == image
    # The token reaches the run only through the secret; the DuckDB volume is mounted.
    assert {"secretRef": {"name": SECRET}} in container["envFrom"]
    assert not any(e["name"] == "SEGMENT_API_TOKEN" for e in container.get("env", []))
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SEGMENT_DUCKDB_PATH"] == "/data/segment_assets.duckdb"
    assert {"name": "segment-data", "mountPath": "/data"} in container["volumeMounts"]
    assert {"name": "segment-data", "persistentVolumeClaim": {"claimName": "segment-duckdb"}} in pod["volumes"]
    # Sized for a run's step processes, not like the code server.
    assert container["resources"]["requests"]["memory"] == "2Gi"
    assert pod["securityContext"]["fsGroup"] == 10001


def test_values_keep_the_token_in_a_secret(deployment: dict[str, Any]) -> None:
    assert [s["name"] for s in deployment["envSecrets"]] == [SECRET]
    assert "SEGMENT_API_TOKEN" not in yaml.safe_dump(deployment)
    # No key that holds a credential has a value in the file.
    assert not re.search(r"(?im)^\s*[\w-]*(token|password)\s*:\s*\S", VALUES.read_text())


@pytest.mark.e2e
def test_image_serves_the_code_location_the_chart_names(deployment: dict[str, Any]) -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.M)
    [cmd] = re.findall(r"^CMD (\[.*\])$", dockerfile, re.M)
    cmd = yaml.safe_load(cmd)
    assert cmd[:3] == ["dagster", "api", "grpc"]
    module = cmd[cmd.index("--module-name") + 1]
    args = deployment["dagsterApiGrpcArgs"]
    assert args[args.index("--module-name") + 1] == module
    assert cmd[cmd.index("--port") + 1] == str(deployment["port"])
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    assert project["tool"]["dagster"]["module_name"] == module
    # The image installs what the rendered instance names (dagster_postgres, dagster_k8s).
    assert re.search(r'pip install "\.\[postgres,k8s\]"', dockerfile)
    assert {"postgres", "k8s"} <= set(project["project"]["optional-dependencies"])

    validate = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "--module-name", module],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=PROJECT_ROOT,
    )
    assert validate.returncode == 0, validate.stdout[-3000:] + validate.stderr[-3000:]


def test_object_store_for_a_lake_across_nodes() -> None:
    """Run pods on several nodes cannot share one DuckDB file; a lake on object storage is the
    shared target. The S3 server the lake's tests use holds a Delta table written and read back."""
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    from segment_assets_tests.services import s3_server

    rows = pa.table({"id": ["a", "b", "c"], "enabled": [True, False, True]})
    with s3_server("segment-lake") as s3:
        uri = f"s3://{s3.bucket}/segment/sources"
        write_deltalake(uri, rows, storage_options=s3.storage_options())
        assert DeltaTable(uri, storage_options=s3.storage_options()).to_pyarrow_table().sort_by("id") == rows
        keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket=s3.bucket)["Contents"]]
        assert any(k.startswith("segment/sources/_delta_log/") for k in keys)
