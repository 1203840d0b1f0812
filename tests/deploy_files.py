"""What the deploy tests share: the deployment files as they read them (the stack file,
Dockerfiles, requirements), the redis/ files pointed at local paths, and promtool.

No fixtures: each test module loads the stack in its own ``stack`` fixture.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
STACK_FILE = ROOT / "docker-stack.yml"
APP_IMAGE_VARIABLE = "${AEROGUARD_IMAGE"
PROMTOOL_CACHE = ROOT / ".cache/prometheus/usr/bin/promtool"


def load_stack() -> dict:
    """docker-stack.yml, parsed."""
    with STACK_FILE.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def names(entries) -> list[str]:
    """Names from a service's short (list of names) or long (mapping) reference syntax."""
    if entries is None:
        return []
    if isinstance(entries, dict):
        return list(entries)
    return [entry if isinstance(entry, str) else entry["source"] for entry in entries]


def named_volumes(service: dict) -> list[str]:
    names = []
    for entry in service.get("volumes", []):
        if isinstance(entry, dict):
            if entry.get("type", "volume") == "volume":
                names.append(entry["source"])
            continue
        source = entry.split(":", 1)[0]
        if not source.startswith(("/", ".", "~")):
            names.append(source)
    return names


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def config_targets(service: dict) -> dict[str, str]:
    """Config name -> path where the service sees it."""
    return {entry["source"]: entry["target"] for entry in service.get("configs", []) if isinstance(entry, dict)}


def uses_app_image(service: dict) -> bool:
    return str(service.get("image", "")).startswith(APP_IMAGE_VARIABLE)


def services_using(stack: dict, predicate) -> list[str]:
    return [name for name, service in stack["services"].items() if predicate(service)]


def command_flags(service: dict) -> dict[str, str]:
    """``--name=value`` arguments of a service's command as a mapping."""
    return dict(arg[2:].split("=", 1) for arg in service.get("command", []) if arg.startswith("--") and "=" in arg)


def published_ports(service: dict) -> set[int]:
    ports = set()
    for port in service.get("ports", []):
        ports.add(int(port["published"]) if isinstance(port, dict) else int(str(port).split(":")[0]))
    return ports


def dockerfile() -> list[tuple[str, str]]:
    """The app Dockerfile's (INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    logical, current = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        if current.strip():
            instruction, _, args = current.strip().partition(" ")
            logical.append((instruction.upper(), args.strip()))
        current = ""
    return logical


def serving_dockerfile() -> list[tuple[str, str]]:
    return [(line.split()[0].upper(), line.split(None, 1)[1]) for line in
            (ROOT / "serving/Dockerfile").read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]


def requirement_lines(path: Path) -> list[str]:
    """Lines of a requirements file and of the files it includes with -r."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith(("-r ", "--requirement ")):
            lines += requirement_lines(path.parent / line.split(None, 1)[1])
        elif line:
            lines.append(line)
    return lines


def promtool_path() -> str:
    """promtool from PATH, or the copy `make setup` unpacks from Debian's prometheus package."""
    found = shutil.which("promtool") or (str(PROMTOOL_CACHE) if PROMTOOL_CACHE.is_file() else None)
    if found is None:
        pytest.fail("promtool not found: run `make setup` (unpacks it from Debian's prometheus package)",
                    pytrace=False)
    return found


class RedisFiles:
    """redis/ copied to a temporary folder with the container paths pointed at local ones.

    Only paths change: module, data dir and Sentinel's master address and port. Every other
    directive is the one the stack runs.
    """

    def __init__(self, tmp_path: Path, module: Path, password: str, grafana_password: str = "gr4fana-r3ads"):
        self.conf_dir = tmp_path / "conf"
        self.conf_dir.mkdir()
        self.secret = tmp_path / "redis_password"
        self.secret.write_text(password, encoding="utf-8")
        self.grafana_secret = tmp_path / "redis_grafana_password"
        self.grafana_secret.write_text(grafana_password, encoding="utf-8")
        self.module = module
        shutil.copy(ROOT / "redis/entrypoint.sh", self.conf_dir / "entrypoint.sh")

    def write(self, name: str, replacements: dict[str, str]) -> None:
        text = (ROOT / "redis" / name).read_text(encoding="utf-8")
        for old, new in replacements.items():
            assert text.count(old) == 1, f"{name}: expected exactly one {old!r}"
            text = text.replace(old, new)
        (self.conf_dir / name).write_text(text, encoding="utf-8")

    def env(self, paths, data_dir: Path, **extra: str) -> dict[str, str]:
        return paths.env() | {
            "AEROGUARD_REDIS_BIN": str(paths.bin_dir),
            "AEROGUARD_REDIS_CONF_DIR": str(self.conf_dir),
            "AEROGUARD_REDIS_DATA_DIR": str(data_dir),
            "REDIS_PASSWORD_FILE": str(self.secret),
            "REDIS_GRAFANA_PASSWORD_FILE": str(self.grafana_secret),
            **extra,
        }


def start_logged(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start `argv` in its own session, its output to `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
