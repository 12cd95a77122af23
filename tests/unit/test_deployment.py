"""The team deployment under docker/. No container engine runs here, so these tests check what
can be checked without one: the compose file, the env template and the Dockerfiles parse, and
refer only to commands, options, settings, files, build stages and services that exist."""

from __future__ import annotations

import http.server
import importlib.util
import re
import shlex
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import click
import pytest
import yaml

from exportq.cli import cli
from exportq.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
DOCKERFILES = sorted(DOCKER.glob("Dockerfile*"))
DEPLOY_DOC = ROOT / "docs" / "DEPLOY.md"

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
EXPORTQ_VAR = re.compile(r"\bEXPORTQ_[A-Z0-9_]+\b")
SERVER_SERVICES = ("postgres", "redis", "minio", "api")


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    return load_compose()["services"]


def env_example() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{ENV_EXAMPLE.name}: not KEY=VALUE: {line!r}"
            pairs[key] = value
    return pairs


def interpolate(value: str) -> str:
    """Compose's interpolation, with the template's values (or a stand-in for empty secrets)."""
    example = env_example()

    def substitute(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2) or "", match.group(3) or ""
        given = example.get(name, "")
        if given:
            return given
        return arg if op.endswith("-") else "secret"

    return INTERPOLATION.sub(substitute, value.replace("$$", "\0")).replace("\0", "$")


def argv_of(service: dict[str, Any]) -> list[str]:
    parts: list[str] = []
    for key in ("entrypoint", "command"):
        value = service.get(key)
        if isinstance(value, str):
            parts += shlex.split(value)
        elif value:
            parts += [str(v) for v in value]
    return [interpolate(p) for p in parts]


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    instructions, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        instructions.append((word.upper(), rest.strip()))
    return instructions


def stages(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Each named stage's instructions (FROM first)."""
    named: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for word, rest in dockerfile_instructions(path):
        if word == "FROM":
            match = re.fullmatch(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            assert match, f"{path.name}: cannot read FROM {rest}"
            current = [(word, rest)]
            if match.group(2):
                named[match.group(2)] = current
        elif current is not None:
            current.append((word, rest))
    return named


def stage_chain(path: Path, target: str) -> list[tuple[str, str]]:
    """A target's instructions, its parent stages' first."""
    named = stages(path)
    base = named[target][0][1].split()[0]
    parent = stage_chain(path, base) if base in named else []
    return parent + named[target]


def exportq_command(argv: list[str]) -> click.Command:
    """Resolve `exportq SUB [SUB] --opts...` against the real CLI; click raises on an unknown
    subcommand, an unknown option or a bad value."""
    assert "exportq" in argv, argv
    args = argv[argv.index("exportq") + 1 :]
    command: click.Command = cli
    names = ["exportq"]
    while isinstance(command, click.Group):
        assert args, f"{' '.join(names)} needs a subcommand"
        name, *args = args
        sub = command.commands.get(name)
        assert sub is not None, f"`{' '.join(names)} {name}`: no such command"
        command, names = sub, [*names, name]
    command.make_context(" ".join(names), list(args))
    return command


def dockerignored(relative: str) -> bool:
    """Whether .dockerignore keeps `relative` (or a folder above it) out of the build context."""
    ignored = False
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = (
            re.escape(pattern)
            .replace(r"\*\*/", "(?:.*/)?")
            .replace(r"\*\*", ".*")
            .replace(r"\*", "[^/]*")
            .replace(r"\?", "[^/]")
        )
        if any(re.fullmatch(regex, c) for c in candidates):
            ignored = not negate
    return ignored


# ------------------------------------------------------------------------------- compose


def test_compose_parses_with_the_expected_services() -> None:
    assert set(services()) == {
        "postgres",
        "redis",
        "minio",
        "minio-init",
        "migrate",
        "api",
        "worker-cpu",
        "worker-cuda",
        "flower",
    }
    assert set(load_compose()["volumes"]) >= {"pgdata", "redisdata", "miniodata"}


@pytest.mark.parametrize("name", ["migrate", "api", "worker-cpu", "worker-cuda", "flower"])
def test_compose_runs_exportq_commands_that_exist(name: str) -> None:
    exportq_command(argv_of(services()[name]))


def test_the_exportq_commands_are_the_expected_ones() -> None:
    got = {name: argv_of(services()[name])[:4] for name in ("migrate", "worker-cpu", "flower")}
    assert got["migrate"][:3] == ["exportq", "db", "upgrade"]
    assert got["worker-cpu"][:4] == ["exportq", "worker", "--device", "cpu"]
    assert argv_of(services()["worker-cuda"])[:4] == ["exportq", "worker", "--device", "cuda"]
    assert got["flower"][:2] == ["exportq", "flower"]
    assert "0.0.0.0" in argv_of(services()["flower"])  # reachable from outside its container
    assert "--no-migrate" in argv_of(services()["api"])  # the one-shot migrates, not each API


def test_depends_on_names_existing_services_with_known_conditions() -> None:
    all_services = services()
    for name, service in all_services.items():
        depends = service.get("depends_on", {})
        items = depends.items() if isinstance(depends, dict) else ((d, {}) for d in depends)
        for other, spec in items:
            assert other in all_services, f"{name} depends on unknown service {other}"
            assert spec.get("condition", "service_started") in {
                "service_started",
                "service_healthy",
                "service_completed_successfully",
            }
            if spec.get("condition") == "service_healthy":
                assert "healthcheck" in all_services[other], f"{other} has no healthcheck"


def test_start_order_migrates_before_the_api_and_workers() -> None:
    all_services = services()
    assert all_services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker-cpu", "worker-cuda"):
        depends = all_services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
        assert depends["redis"]["condition"] == "service_healthy", name
        assert depends["minio-init"]["condition"] == "service_completed_successfully", name
    assert all_services["api"]["depends_on"]["minio"]["condition"] == "service_healthy"
    assert all_services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    for one_shot in ("migrate", "minio-init"):
        assert all_services[one_shot]["restart"] == "no"


@pytest.mark.parametrize("name", SERVER_SERVICES)
def test_healthchecks_for_the_stores_and_the_api(name: str) -> None:
    test = services()[name]["healthcheck"]["test"]
    assert isinstance(test, list) and test[0] in {"CMD", "CMD-SHELL"} and len(test) > 1


def test_api_healthcheck_asks_readyz() -> None:
    test = services()["api"]["healthcheck"]["test"]
    assert test[1:3] == ["exportq-healthcheck", "http"]
    assert test[3].endswith(":8000/readyz")


def test_redis_persists_with_aof_and_never_evicts() -> None:
    argv = argv_of(services()["redis"])
    pairs = dict(zip(argv[1::2], argv[2::2], strict=False))
    assert argv[0] == "redis-server"
    assert pairs["--appendonly"] == "yes"
    assert pairs["--maxmemory-policy"] == "noeviction"
    assert "--requirepass" in pairs
    assert services()["redis"]["volumes"][0].endswith(":/data")


def test_broker_url_carries_the_redis_password() -> None:
    env = services()["api"]["environment"]
    assert env["EXPORTQ_BROKER_URL"].startswith("redis://:${REDIS_PASSWORD:?")
    assert "@redis:6379/" in env["EXPORTQ_BROKER_URL"]
    assert env["EXPORTQ_DATABASE_URL"].startswith("postgresql+psycopg://")


def test_flower_requires_basic_auth() -> None:
    env = services()["flower"]["environment"]
    assert re.fullmatch(
        r"\$\{EXPORTQ_FLOWER_BASIC_AUTH:\?[^}]+\}", env["EXPORTQ_FLOWER_BASIC_AUTH"]
    )


def test_cuda_worker_reserves_a_gpu_under_the_gpu_profile() -> None:
    worker = services()["worker-cuda"]
    assert worker["profiles"] == ["gpu"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert all(("count" in d) != ("device_ids" in d) for d in devices)  # exactly one of them


def test_api_and_workers_share_the_allow_list_and_the_store() -> None:
    envs = {n: services()[n]["environment"] for n in ("api", "worker-cpu", "worker-cuda")}
    for key in ("EXPORTQ_ALLOWED_MODULES", "EXPORTQ_ARTIFACTS_URL", "EXPORTQ_S3_ENDPOINT_URL"):
        assert len({env[key] for env in envs.values()}) == 1, key
    assert envs["api"]["EXPORTQ_ARTIFACTS_URL"].startswith("s3://")


def test_build_contexts_dockerfiles_and_targets_exist() -> None:
    for name, service in services().items():
        build = service.get("build")
        if build is None:
            continue
        context = (COMPOSE.parent / build["context"]).resolve()
        assert context == ROOT, f"{name}: the build context is the repository root"
        dockerfile = context / build["dockerfile"]
        assert dockerfile.is_file(), f"{name}: no {dockerfile}"
        assert build["target"] in stages(dockerfile), f"{name}: no stage {build['target']}"
        assert "image" in service, f"{name}: name the image, so GPU hosts can pull it"


# ------------------------------------------------------------------------------- settings


def deployment_texts() -> dict[str, str]:
    files = [COMPOSE, ENV_EXAMPLE, *DOCKERFILES]
    return {path.name: path.read_text() for path in files}


def test_every_exportq_variable_is_a_setting() -> None:
    fields = {name.upper() for name in Settings.model_fields}
    for name, text in deployment_texts().items():
        for var in EXPORTQ_VAR.findall(text):
            assert var.removeprefix("EXPORTQ_") in fields, f"{name}: {var} is not a setting"


def test_deploy_doc_explains_every_variable_the_deployment_uses() -> None:
    doc = DEPLOY_DOC.read_text()
    used = {v for text in deployment_texts().values() for v in EXPORTQ_VAR.findall(text)}
    missing = sorted(v for v in used if v not in doc)
    assert not missing, f"docs/DEPLOY.md does not mention {missing}"
    fields = {name.upper() for name in Settings.model_fields}
    unknown = sorted(v for v in set(EXPORTQ_VAR.findall(doc)) if v[8:] not in fields)
    assert not unknown, f"docs/DEPLOY.md names variables that are not settings: {unknown}"


def test_every_compose_variable_is_in_the_env_template_and_back() -> None:
    text = COMPOSE.read_text().replace("$$", "")
    template = env_example()
    used = set()
    for name, op, _ in INTERPOLATION.findall(text):
        used.add(name)
        if not op.endswith("-"):  # required or defaultless: the template must name it
            assert name in template, f"{ENV_EXAMPLE.name} lacks {name}"
    assert not set(template) - used, f"unused in compose: {sorted(set(template) - used)}"


def test_env_template_holds_no_secret() -> None:
    for key, value in env_example().items():
        if any(word in key for word in ("PASSWORD", "SECRET", "BASIC_AUTH", "TOKEN")):
            assert value == "", f"{ENV_EXAMPLE.name}: {key} must be left empty"


# ------------------------------------------------------------------------------- Dockerfiles


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_copies_files_that_exist_and_reach_the_context(path: Path) -> None:
    known = set()
    for word, rest in dockerfile_instructions(path):
        if word == "FROM":
            match = re.search(r"\s+AS\s+(\S+)$", rest, re.IGNORECASE)
            if match:
                known.add(match.group(1))
        if word not in ("COPY", "ADD"):
            continue
        args = shlex.split(rest)
        flags = [a for a in args if a.startswith("--")]
        paths = [a for a in args if not a.startswith("--")]
        source_stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
        if source_stage is not None:
            assert source_stage in known, f"{path.name}: COPY --from={source_stage}: no stage"
            continue
        for source in paths[:-1]:
            assert (ROOT / source).exists(), f"{path.name}: COPY {source}: no such file"
            assert not dockerignored(source), f"{path.name}: COPY {source}: .dockerignore drops it"


@pytest.mark.parametrize(
    ("path", "target"),
    [
        (DOCKER / "Dockerfile", "api"),
        (DOCKER / "Dockerfile", "flower"),
        (DOCKER / "Dockerfile", "worker-cpu"),
        (DOCKER / "Dockerfile.cuda", "worker-cuda"),
    ],
)
def test_image_runs_an_existing_command_as_non_root_with_a_healthcheck(
    path: Path, target: str
) -> None:
    chain = stage_chain(path, target)
    words = [word for word, _ in chain]
    assert "USER" in words and dict(chain)["USER"] not in ("root", "0")
    healthcheck = next(rest for word, rest in reversed(chain) if word == "HEALTHCHECK")
    assert "exportq-healthcheck" in healthcheck
    copies = [rest for word, rest in chain if word == "COPY"]
    assert any("docker/healthcheck.py /usr/local/bin/exportq-healthcheck" in c for c in copies)
    cmd = next(rest for word, rest in reversed(chain) if word == "CMD")
    exportq_command(yaml.safe_load(cmd))  # exec form: a JSON list


def test_dockerfiles_pin_the_torch_of_the_worker_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pin = next(d for d in project["optional-dependencies"]["worker"] if d.startswith("torch=="))
    for path in (DOCKER / "Dockerfile", DOCKER / "Dockerfile.cuda"):
        assert set(re.findall(r"torch==[\w.+]+", path.read_text())) == {pin}, path.name


def test_dockerignore_keeps_the_bulk_and_the_secrets_out() -> None:
    for path in (".venv/bin/python", "var/exportq.db", ".git/HEAD", "docker/.env", ".env"):
        assert dockerignored(path), path
    for path in ("pyproject.toml", "README.md", "exportq/cli.py", "docker/healthcheck.py"):
        assert not dockerignored(path), path


# ------------------------------------------------------------------------------- healthcheck


@pytest.fixture(scope="module")
def healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("exportq_healthcheck", DOCKER / "healthcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def http_server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/readyz" else 503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_healthcheck_http(healthcheck: ModuleType, http_server: str) -> None:
    assert healthcheck.main(["http", f"{http_server}/readyz"]) == 0
    assert healthcheck.main(["http", f"{http_server}/down"]) == 1
    assert healthcheck.main(["http", "http://127.0.0.1:1/readyz"]) == 1
    assert healthcheck.main([]) == 2


def test_healthcheck_worker_matches_this_host_only(healthcheck: ModuleType) -> None:
    replies = [{"cpu@a1b2": {"ok": "pong"}}, {"cuda0@c3d4": {"ok": "pong"}}]
    assert healthcheck.answered(replies, "a1b2")
    assert healthcheck.answered(replies, "c3d4")
    assert not healthcheck.answered(replies, "e5f6")
    assert not healthcheck.answered(replies, "b2")
    assert not healthcheck.answered([], "a1b2")


def test_image_requirements_are_the_extras_in_pyproject() -> None:
    import subprocess
    import sys

    def listed(*extras: str) -> list[str]:
        out = subprocess.run(
            [sys.executable, str(ROOT / "docker" / "requirements.py"), *extras],
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        return out.split()

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert listed("server") == project["dependencies"] + extras["server"]
    assert (
        listed("worker", "server") == project["dependencies"] + extras["worker"] + extras["server"]
    )
    assert not any(r.startswith("torch") for r in listed("server"))
