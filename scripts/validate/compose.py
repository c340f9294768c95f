"""Static validation of every Compose stack, as `docker compose config` would do it.

No Docker engine runs here, so for each stack (Compose files, env files) this:
0. loads each file rejecting duplicate keys, resolves `extends` (paths rebased to the
   extending file), and merges overlays as Compose does (mappings merged, `command`,
   `entrypoint` and health check tests replaced, other lists appended);
1. interpolates ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message} and $$ from
   the env files (an unset variable without a default is an error);
2. validates the result against the Compose Specification JSON schema (vendored by
   check-jsonschema);
3. checks what the schema cannot: depends_on targets exist, `service_healthy` targets
   have a health check, named volumes and secrets are declared, env files, build
   contexts, Dockerfiles and bind-mounted files exist (generated secrets and
   certificates excepted: `make secrets` creates them);
4. checks that the proxies and the object store, whose images allow it, run
   unprivileged: a non-root `user:`, every capability dropped, no new privileges, and
   no port below 1024 inside the container.
Exits non-zero with one line per problem.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import check_jsonschema
import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = Path(check_jsonschema.__file__).parent / "builtin_schemas/vendor/compose-spec.json"

# (compose files, env files) as the stacks are started (see the Makefile).
CLUSTER_ENV = ["docker/cluster/.env.cluster.example"]
STACKS = [
    (["docker/docker-compose.yml"], ["docker/.env.ports.example"]),
    (["docker/docker-compose.yml"], ["docker/.env.ports.localdev"]),
    (
        ["docker/docker-compose.yml", "docker/docker-compose.backup.yml"],
        ["docker/.env.ports.example"],
    ),
    (["docker/cluster/docker-compose.data.yml"], CLUSTER_ENV),
    (["docker/cluster/docker-compose.control.yml"], CLUSTER_ENV),
    (["docker/cluster/docker-compose.app.yml"], CLUSTER_ENV),
]
# Lists an overlay replaces rather than extends (Compose merge rules).
REPLACED_LISTS = {"command", "entrypoint", "test"}
# Created by `make secrets` / switch_cluster_mode.py, never committed.
GENERATED = ("docker/secrets/", "docker/certs/public.crt", "docker/certs/private.key",
             "docker/certs/pgbackrest/", "docker/certs/minio/", "configs/cluster/")  # fmt: skip
# Services whose images run without root (nginx-unprivileged, MinIO, mc).
UNPRIVILEGED_SERVICES = {"nginx", "monitoring-proxy", "minio", "minio-init"}
VARIABLE = re.compile(
    r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)"
)


class UniqueKeyLoader(yaml.SafeLoader):
    """Rejects a key given twice in one mapping, which docker compose refuses too."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` keys may be overridden: not duplicates
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_compose(path: Path) -> dict:
    """One Compose file, its services' `extends` resolved."""
    compose = yaml.load(path.read_text(), Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    for name, service in (compose.get("services") or {}).items():
        compose["services"][name] = resolve_extends(service, path.parent)
    return compose


def resolve_extends(service: dict, base: Path) -> dict:
    extends = service.get("extends")
    if not extends:
        return service
    source = (base / extends["file"]).resolve() if "file" in extends else None
    parent_compose = load_compose(source) if source else None
    parent = (parent_compose or {"services": {}})["services"][extends["service"]]
    if source:
        parent = rebase_paths(parent, source.parent, base)
    own = {key: value for key, value in service.items() if key != "extends"}
    return merge(parent, own)


def rebase_paths(service: dict, origin: Path, target: Path) -> dict:
    """Relative paths of a service from another file, made relative to `target`."""

    def rebase(path: str) -> str:
        return os.path.relpath(origin / path, target) if path.startswith(".") else path

    service = dict(service)
    if isinstance(service.get("build"), str):
        service["build"] = rebase(service["build"])
    elif isinstance(service.get("build"), dict):
        service["build"] = {
            **service["build"],
            "context": rebase(service["build"].get("context", ".")),
        }
    service["volumes"] = [
        rebase(volume) if isinstance(volume, str) else volume
        for volume in service.get("volumes", [])
    ]
    return service


def merge(base, override):
    """Compose's merge of an overlay (or an extending service) onto a base."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            if key in merged and key not in REPLACED_LISTS:
                merged[key] = merge(merged[key], value)
            else:
                merged[key] = value
        return merged
    if isinstance(base, list) and isinstance(override, list):
        return base + [item for item in override if item not in base]
    return override


def read_env_files(paths: list[str]) -> dict[str, str]:
    env = {}
    for path in paths:
        for line in (ROOT / path).read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                name, _, value = line.partition("=")
                env[name.strip()] = value.strip().strip("'\"")
    return env


def interpolate(value, env: dict[str, str], problems: list[str], where: str):
    if isinstance(value, dict):
        return {k: interpolate(v, env, problems, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, problems, where) for v in value]
    if not isinstance(value, str):
        return value

    def replace(match: re.Match) -> str:
        if match[0] == "$$":
            return "$"
        name = match[1] or match[4]
        operator, argument = match[2], match[3] or ""
        present = name in env and (env[name] != "" or operator not in (":-", ":?"))
        if present:
            return env[name]
        if operator in ("-", ":-"):
            return argument
        problems.append(
            f"{where}: variable {name} is not set" + (f" ({argument})" if argument else "")
        )
        return ""

    return VARIABLE.sub(replace, value)


def check_references(compose: dict, base: Path, problems: list[str], label: str) -> None:
    services = compose.get("services", {})
    volumes, secrets = set(compose.get("volumes") or {}), set(compose.get("secrets") or {})
    for name, service in services.items():
        where = f"{label}: service {name}"
        depends = service.get("depends_on", {})
        for target, condition in depends.items() if isinstance(depends, dict) else []:
            if target not in services:
                problems.append(f"{where}: depends_on unknown service {target}")
            elif condition.get("condition") == "service_healthy" and not _has_healthcheck(
                services[target]
            ):
                problems.append(
                    f"{where}: waits for {target} to be healthy, which has no healthcheck"
                )
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0] if isinstance(mount, str) else mount.get("source", "")
            if source.startswith("."):
                _must_exist(base / source, where, problems)
            elif source.startswith("/"):
                pass  # a path on the Docker host (node-exporter's /), not in this repository
            elif source and source not in volumes:
                problems.append(f"{where}: volume {source} is not declared")
        for secret in service.get("secrets", []):
            secret_name = secret if isinstance(secret, str) else secret["source"]
            if secret_name not in secrets:
                problems.append(f"{where}: secret {secret_name} is not declared")
        env_files = service.get("env_file", [])
        for env_file in [env_files] if isinstance(env_files, str) else env_files:
            _must_exist(
                base / (env_file if isinstance(env_file, str) else env_file["path"]),
                where,
                problems,
            )
        build = service.get("build")
        if build:
            context = base / (build if isinstance(build, str) else build.get("context", "."))
            _must_exist(context, where, problems)
            dockerfile = (
                "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            )
            _must_exist(context / dockerfile, where, problems)
    for name, secret in (compose.get("secrets") or {}).items():
        if "file" in secret:
            _must_exist(base / secret["file"], f"{label}: secret {name}", problems)


def check_unprivileged(compose: dict, problems: list[str], label: str) -> None:
    for name, service in (compose.get("services") or {}).items():
        if name not in UNPRIVILEGED_SERVICES:
            continue
        where = f"{label}: service {name}"
        user = str(service.get("user", "")).split(":")[0]
        if user in ("", "0", "root"):
            problems.append(f"{where}: runs as root (set `user:` to an unprivileged uid)")
        if "ALL" not in service.get("cap_drop", []):
            problems.append(f"{where}: keeps its Linux capabilities (cap_drop: [ALL])")
        if "no-new-privileges:true" not in service.get("security_opt", []):
            problems.append(f"{where}: may gain privileges (security_opt: no-new-privileges:true)")
        for port in service.get("ports", []):
            inside = container_port(port)
            if inside < 1024:
                problems.append(
                    f"{where}: listens on the privileged port {inside} in the container"
                )


def container_port(port) -> int:
    """The container side of a published port: long syntax, or [[ip:]host:]container[/proto]."""
    if isinstance(port, dict):
        return int(str(port["target"]).split("-")[0])
    return int(str(port).split("/")[0].rsplit(":", 1)[-1].split("-")[0])


def _has_healthcheck(service: dict) -> bool:
    check = service.get("healthcheck")
    return bool(check) and not check.get("disable", False)


def _must_exist(path: Path, where: str, problems: list[str]) -> None:
    relative = (
        path.resolve().relative_to(ROOT).as_posix()
        if path.resolve().is_relative_to(ROOT)
        else str(path)
    )
    if relative.startswith(GENERATED) or any(relative == g.rstrip("/") for g in GENERATED):
        return
    if not path.exists():
        problems.append(f"{where}: {relative} does not exist")


def load_stack(
    compose_files: list[str], env_files: list[str], problems: list[str], label: str
) -> dict:
    """A stack as Compose sees it: its files merged, variables interpolated."""
    raw = {}
    for compose_file in compose_files:
        raw = merge(raw, load_compose(ROOT / compose_file))
    return interpolate(raw, read_env_files(env_files), problems, label)


def main() -> int:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    problems: list[str] = []
    for compose_files, env_files in STACKS:
        label = f"{' + '.join(compose_files)} [{', '.join(env_files)}]"
        try:
            compose = load_stack(compose_files, env_files, problems, label)
        except yaml.YAMLError as exc:
            problems.append(f"{label}: {exc}")
            continue
        for error in sorted(validator.iter_errors(compose), key=lambda e: list(e.path)):
            path = ".".join(str(part) for part in error.path)
            problems.append(f"{label}: {path}: {error.message}")
        # Relative paths are relative to the first file's directory (Compose's project directory).
        check_references(compose, (ROOT / compose_files[0]).parent, problems, label)
        check_unprivileged(compose, problems, label)
        print(f"compose: {label}: {len(compose.get('services', {}))} services checked")
    for problem in problems:
        print(f"compose: ERROR {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
