"""docker-compose.yaml, Dockerfile and .env.example, checked without a Docker engine.

The file must keep the layout of Airflow's official compose file for 3.x, run every Airflow
component from one image, name only real Airflow options (``AIRFLOW__SECTION__KEY``), real
sync settings and the DAG's connections, and its airflow-init must really do what it says:
its scripts are run here against a throwaway PostgreSQL. A compose CLI (``docker compose``, or
Debian's ``docker-compose``, which ``scripts/provision`` installs) validates the whole file with
``config``, which needs no engine.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import uuid
from functools import cache
from pathlib import Path

import pytest
import yaml
from dotenv import dotenv_values

from moesif_segment_sync.airflow import context as airflow_context
from moesif_segment_sync.airflow.hooks import MOESIF_HOST, MoesifHook, SegmentHook
from moesif_segment_sync.settings import ENV_PREFIX, SyncSettings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yaml"
ENV_EXAMPLE = REPO / ".env.example"
AIRFLOW_SERVICES = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-worker", "airflow-triggerer", "airflow-init"}
REQUIRED_SERVICES = AIRFLOW_SERVICES | {"postgres", "redis"}
STAGING = "/opt/airflow/staging"
# Names that are neither Airflow options nor sync settings but mean something to the official
# image's entrypoint, to Python, to PostgreSQL's image or to cloud SDKs.
OTHER_NAMES = {
    "PYTHONPATH", "DUMB_INIT_SETSID", "CONNECTION_CHECK_MAX_COUNT", "_AIRFLOW_DB_MIGRATE",
    "_AIRFLOW_WWW_USER_USERNAME", "_AIRFLOW_WWW_USER_PASSWORD",
    "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
    "GOOGLE_APPLICATION_CREDENTIALS",
}
INTERPOLATION = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?])?")


@cache
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def services() -> dict[str, dict]:
    return compose()["services"]


def airflow_services() -> dict[str, dict]:
    return {name: spec for name, spec in services().items()
            if name.startswith("airflow-") or name == "flower"}


def mount(volume: str) -> tuple[str, str]:
    """(target, source) of a short-syntax volume; the source may hold ${VAR:-default}."""
    if volume.endswith((":ro", ":rw")):
        volume = volume[:-3]
    source, target = volume.rsplit(":", 1)
    return target, source


def environment(spec: dict) -> dict[str, str]:
    env = spec.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(key): str(value) for key, value in env.items()}


@cache
def airflow_options() -> frozenset[tuple[str, str]]:
    """(SECTION, KEY) of every option Airflow and its installed providers describe."""
    from airflow.configuration import retrieve_configuration_description

    described = retrieve_configuration_description(include_airflow=True, include_providers=True)
    return frozenset((section.upper(), option.upper())
                     for section, body in described.items() for option in body["options"])


def sync_setting_names() -> set[str]:
    """MOESIF_SEGMENT_* names: the settings, and what the DAG file reads when parsed."""
    dag_source = (REPO / "dags" / "moesif_to_segment.py").read_text()
    return ({ENV_PREFIX + field.upper() for field in SyncSettings.model_fields}
            | set(re.findall(r"os\.environ\.get\(\s*\"(MOESIF_SEGMENT_\w+)\"", dag_source)))


def interpolated_names() -> set[str]:
    return {match["name"] for match in INTERPOLATION.finditer(COMPOSE_FILE.read_text())}


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a variable anything in this set-up reads, or None."""
    if name.startswith("AIRFLOW__"):
        parts = name.split("__")
        if len(parts) != 3:
            return f"{name}: not AIRFLOW__SECTION__KEY"
        _, section, key = parts
        base = re.sub(r"_(CMD|SECRET)$", "", key)
        if (section, key) not in airflow_options() and (section, base) not in airflow_options():
            return f"{name}: Airflow has no option [{section.lower()}] {key.lower()}"
        return None
    if name.startswith("AIRFLOW_CONN_"):
        known = {conn_id.upper() for conn_id in (airflow_context.MOESIF_CONN_ID,
                                                 airflow_context.SEGMENT_CONN_ID,
                                                 airflow_context.AUDIT_CONN_ID)}
        return None if name[len("AIRFLOW_CONN_"):] in known else f"{name}: no such connection"
    if name.startswith(ENV_PREFIX):
        return None if name in sync_setting_names() else f"{name}: no such sync setting"
    if name in OTHER_NAMES or name in interpolated_names():
        return None
    return f"{name}: nothing reads it"


def env_example_names() -> list[str]:
    """Every variable .env.example sets or documents (commented-out lines too)."""
    return re.findall(r"^#?\s?([A-Za-z_][A-Za-z0-9_]*)=", ENV_EXAMPLE.read_text(), re.MULTILINE)


def init_script() -> str:
    """airflow-init's bash script as the container runs it (compose turns $$ into $)."""
    command = services()["airflow-init"]["command"]
    assert command[0] == "-c" and services()["airflow-init"]["entrypoint"] == "/bin/bash"
    return command[1].replace("$$", "$")


def init_python(marker: str) -> str:
    """The Python heredoc of airflow-init's script that contains ``marker``."""
    [script] = [block for block in re.findall(r"python - <<'PY'\n(.*?)\nPY\n", init_script(),
                                              re.DOTALL) if marker in block]
    return script


# ------------------------------------------------------------------------- the layout


def test_it_has_the_services_of_airflows_compose_file():
    assert REQUIRED_SERVICES <= set(services())
    assert services()["airflow-worker"]["command"] == "celery worker"
    assert {name: spec.get("command") for name, spec in services().items()
            if name in AIRFLOW_SERVICES - {"airflow-init", "airflow-worker"}} == {
        "airflow-apiserver": "api-server", "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor", "airflow-triggerer": "triggerer"}
    for name, spec in airflow_services().items():
        env = environment(spec)
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false", name
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql"), name
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://"), name
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://"), name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == \
            "http://airflow-apiserver:8080/execution/", name
        assert "_PIP_ADDITIONAL_REQUIREMENTS" not in env, name


def test_every_airflow_service_runs_one_image_with_the_code_and_shared_staging():
    specs = airflow_services()
    assert len({json.dumps([spec.get("image"), spec.get("build")], sort_keys=True)
                for spec in specs.values()}) == 1
    image, build = next(iter(specs.values())).get("image"), next(iter(specs.values()))["build"]
    assert build["context"] == "." and image
    for name, spec in specs.items():
        mounts = dict(mount(volume) for volume in spec["volumes"])
        for folder in ("dags", "plugins", "include"):
            assert mounts[f"/opt/airflow/{folder}"].endswith(f"/{folder}"), (name, folder)
        # One named volume for staging, mounted by every worker and the api-server alike.
        assert mounts[STAGING] in compose()["volumes"], name
        env = environment(spec)
        assert env["PYTHONPATH"] == "/opt/airflow/include", name
        assert env["MOESIF_SEGMENT_STAGING_ROOT"] == \
            "${MOESIF_SEGMENT_STAGING_ROOT:-file://" + STAGING + "}", name
        assert spec["env_file"] == [".env"], name
    # The tasks import the package from include/ and the staging root is that volume.
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "ENV PYTHONPATH=/opt/airflow/include" in dockerfile
    assert f"mkdir -p {STAGING}" in dockerfile


def test_environment_names_are_real_airflow_options_settings_and_connections():
    assert ("CORE", "LOAD_EXAMPLES") in airflow_options()
    assert ("CELERY", "BROKER_URL") in airflow_options()  # the celery provider is installed
    problems = [f"{service}: {problem}" for service, spec in services().items()
                for name in environment(spec) if (problem := name_problem(name))]
    assert problems == []
    assert name_problem("AIRFLOW__CORE__LOAD_EXAMPLE") is not None  # the check can fail
    assert name_problem("AIRFLOW__CELERY__BROKER") is not None
    assert name_problem("MOESIF_SEGMENT_SHARDSIZE") is not None


def test_the_audit_store_is_its_own_postgresql_database():
    env = environment(services()["airflow-worker"])
    default = re.fullmatch(r"\$\{AIRFLOW_CONN_MOESIF_SEGMENT_AUDIT:-(.+)\}",
                           env["AIRFLOW_CONN_MOESIF_SEGMENT_AUDIT"])[1]
    assert default.startswith("postgresql://") and "@postgres:" in default
    metadata_database = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].rsplit("/", 1)[1]
    assert default.rsplit("/", 1)[1] == "moesif_segment_audit" != metadata_database


def test_postgres_and_redis_have_healthchecks_that_airflow_waits_for():
    assert "pg_isready" in services()["postgres"]["healthcheck"]["test"]
    assert services()["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    for name, spec in airflow_services().items():
        assert spec["depends_on"]["postgres"]["condition"] == "service_healthy", name
        assert spec["depends_on"]["redis"]["condition"] == "service_healthy", name
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        assert services()[name]["depends_on"]["airflow-init"]["condition"] == \
            "service_completed_successfully", name
        assert services()[name]["healthcheck"]["test"], name


def test_airflow_init_migrates_and_creates_the_pool_from_the_slots_setting():
    env = environment(services()["airflow-init"])
    assert env["_AIRFLOW_DB_MIGRATE"] == "true"
    script = init_script()
    assert "/entrypoint airflow version" in script  # the entrypoint migrates before it
    assert re.search(r'airflow pools set segment_api "\$\{MOESIF_SEGMENT_LOAD_SLOTS\}"', script)
    assert env["MOESIF_SEGMENT_LOAD_SLOTS"] == "${MOESIF_SEGMENT_LOAD_SLOTS:-1}"
    result = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_airflow_init_writes_the_password_file_the_api_server_reads(tmp_path):
    target = tmp_path / "passwords.json"
    env = {"AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(target),
           "_AIRFLOW_WWW_USER_USERNAME": "ops", "_AIRFLOW_WWW_USER_PASSWORD": 'p"w $x'}
    subprocess.run([sys.executable, "-c", init_python("PASSWORDS_FILE")], env=env, check=True)
    assert json.loads(target.read_text()) == {"ops": 'p"w $x'}
    api = environment(services()["airflow-apiserver"])
    assert api["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"].startswith(
        "/opt/airflow/config/")
    assert "airflow-config:/opt/airflow/config" in services()["airflow-apiserver"]["volumes"]
    assert api["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == \
        "${_AIRFLOW_WWW_USER_USERNAME:-airflow}:admin"


@pytest.mark.postgres
def test_airflow_init_creates_the_audit_database_once(postgres_url):
    import sqlalchemy as sa

    name = f"mss_compose_audit_{uuid.uuid4().hex[:8]}"
    server = postgres_url.rsplit("/", 1)[0]
    env = {"AIRFLOW_CONN_MOESIF_SEGMENT_AUDIT": f"{server}/{name}"}
    script = init_python("CREATE DATABASE")
    outputs = [subprocess.run([sys.executable, "-c", script], env=env, check=True,
                              capture_output=True, text=True).stdout for _ in range(2)]
    assert "created" in outputs[0] and "present" in outputs[1]
    engine = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as db:
            assert db.scalar(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
            db.execute(sa.text(f'DROP DATABASE "{name}"'))
    finally:
        engine.dispose()


def test_an_unreachable_audit_server_warns_and_does_not_stop_the_stack():
    env = {"AIRFLOW_CONN_MOESIF_SEGMENT_AUDIT": "postgresql://u:p@127.0.0.1:1/audit"}
    result = subprocess.run([sys.executable, "-c", init_python("CREATE DATABASE")], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "WARNING: could not check or create audit" in result.stdout


# -------------------------------------------------------------- .env, image, context


def test_interpolated_variables_have_a_default_or_are_in_env_example():
    documented = set(env_example_names())
    for match in INTERPOLATION.finditer(COMPOSE_FILE.read_text()):
        name, operator = match["name"], match["op"]
        if operator in (None, ":?", "?"):
            assert name in documented, f"${{{name}}} has no default and .env.example lacks it"
    assert "AIRFLOW_JWT_SECRET" in documented


def test_env_example_names_are_all_read_and_its_connections_parse():
    problems = [problem for name in env_example_names() if (problem := name_problem(name))]
    assert problems == []
    values = dotenv_values(ENV_EXAMPLE)
    for hook in (MoesifHook, SegmentHook):
        connection = json.loads(values[f"AIRFLOW_CONN_{hook.default_conn_name.upper()}"])
        assert connection["conn_type"] == hook.conn_type
        assert connection["password"]
    assert json.loads(values["AIRFLOW_CONN_MOESIF_DEFAULT"])["host"] == MOESIF_HOST
    assert json.loads(values["AIRFLOW_CONN_SEGMENT_DEFAULT"])["extra"] == {"region": "US"}
    assert values["AIRFLOW_JWT_SECRET"]
    # The real .env holds secrets: git and the image's build context both leave it out.
    assert ".env" in (REPO / ".gitignore").read_text().splitlines()
    dockerignore = (REPO / ".dockerignore").read_text().splitlines()
    assert dockerignore[dockerignore.index("*") + 1:] and "!.env" not in dockerignore


def test_the_dockerfile_extends_the_pinned_airflow_and_installs_requirements():
    dockerfile = (REPO / "Dockerfile").read_text()
    pin = re.search(r"^apache-airflow==(\S+)$", (REPO / "requirements-dev.txt").read_text(),
                    re.MULTILINE)[1]
    assert re.search(rf"^FROM apache/airflow:{re.escape(pin)}$", dockerfile, re.MULTILINE)
    assert "COPY --chown=airflow:0 requirements.txt" in dockerfile
    assert re.search(r'pip install --no-cache-dir "apache-airflow==\$\{AIRFLOW_VERSION\}"\s*\\'
                     r"\s*-r /opt/airflow/requirements.txt", dockerfile)
    allowed = {line.lstrip("!").rstrip("/") for line in
               (REPO / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    copied = set(re.findall(r"^COPY --chown=\S+ (\S+?)/? ", dockerfile, re.MULTILINE))
    assert copied <= allowed, "the Dockerfile copies something .dockerignore leaves out"


def compose_cli() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"],
                                                 capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_config_accepts_the_file_with_env_example(tmp_path):
    if compose_cli() is None:
        pytest.fail("no compose CLI to run `config`: scripts/provision installs docker-compose",
                    pytrace=False)
    shutil.copy(COMPOSE_FILE, tmp_path / "docker-compose.yaml")
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env")
    rendered = subprocess.run([*compose_cli(), "config"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60)
    assert rendered.returncode == 0, rendered.stderr
    config = yaml.safe_load(rendered.stdout)
    secrets = {environment(spec)["AIRFLOW__API_AUTH__JWT_SECRET"]
               for name, spec in config["services"].items() if name.startswith("airflow-")}
    assert secrets == {dotenv_values(ENV_EXAMPLE)["AIRFLOW_JWT_SECRET"]}
    worker = environment(config["services"]["airflow-worker"])
    assert json.loads(worker["AIRFLOW_CONN_SEGMENT_DEFAULT"])["conn_type"] == "segment"
    assert worker["MOESIF_SEGMENT_STAGING_ROOT"] == f"file://{STAGING}"

    # Without the JWT secret compose refuses to start anything, and says why.
    (tmp_path / ".env").write_text("\n".join(
        line for line in ENV_EXAMPLE.read_text().splitlines()
        if not line.startswith("AIRFLOW_JWT_SECRET=")))
    refused = subprocess.run([*compose_cli(), "config", "-q"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "set AIRFLOW_JWT_SECRET in .env" in refused.stderr
