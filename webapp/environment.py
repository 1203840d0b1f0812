"""How a setting is read from the environment: `setting` declares a field with its variable,
`read_group` builds one group of settings from them (webapp/config.py declares the groups).

With webapp/config.py, the only code of `webapp` that reads ``os.environ`` or secret files.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import MISSING
from dataclasses import field


def setting(env: str, default=MISSING, *, default_factory=MISSING, parse: Callable[[str], object] | None = None,
            read: Callable[..., object] | None = None, secret: bool = False):
    """A dataclass field read from the environment variable `env`.

    When `env` is set, `parse` turns its text into the value (by default the type of `default`:
    int, float or str); when unset, the field keeps its default. A `read` function
    ``read(environ, env, default)`` reads the environment itself instead (secret files, older
    names). A `secret` is left out of ``repr``.
    """
    return field(default=default, default_factory=default_factory, repr=not secret,
                 metadata={"env": env, "parse": parse, "read": read})


def read_group(group: type, env: Mapping[str, str]):
    """One group of settings, each field from its variable (or its default); a value that does
    not parse is a `ValueError` naming the variable."""
    values = {}
    for item in dataclasses.fields(group):
        name = item.metadata["env"]
        default = item.default_factory() if item.default is MISSING else item.default
        try:
            if item.metadata["read"] is not None:
                values[item.name] = item.metadata["read"](env, name, default)
            elif name in env:
                values[item.name] = (item.metadata["parse"] or type(default))(env[name])
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{name}: {exc}") from None
    return group(**values)


def csv(text: str) -> tuple[str, ...]:
    """``" a , b,"`` as ``("a", "b")``."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def host_ports(text: str) -> tuple[tuple[str, int], ...]:
    """``"a:26379,b:26379"`` as ``(("a", 26379), ("b", 26379))``."""
    pairs = []
    for item in csv(text):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"expected host:port, got {item!r}")
        pairs.append((host, int(port)))
    return tuple(pairs)


def optional_float(text: str) -> float | None:
    return float(text) if text else None


def redis_url(env: Mapping[str, str], name: str, default: str) -> str:
    """``REDIS_URL``, else ``REDIS_HOST``/``REDIS_PORT`` (the seed deployment's variables)."""
    if env.get(name):
        return env[name]
    return f"redis://{env['REDIS_HOST']}:{env.get('REDIS_PORT', '6379')}/0" if env.get("REDIS_HOST") else default


def secret(env: Mapping[str, str], name: str, default: str | None = None) -> str | None:
    """The value of `name`, or the first line of the file named by ``<name>_FILE``."""
    path = env.get(f"{name}_FILE")
    if path:
        with open(path, encoding="utf-8") as handle:
            return handle.readline().strip() or None
    return env.get(name) or default


def lines(env: Mapping[str, str], name: str) -> list[str]:
    """Entries of ``<name>`` (comma-separated) and of the file ``<name>_FILE`` (one a line), blanks dropped."""
    entries = env.get(name, "").split(",")
    path = env.get(f"{name}_FILE")
    if path:
        with open(path, encoding="utf-8") as handle:
            entries.extend(handle)
    return [entry.strip() for entry in entries if entry.strip()]
