"""The OpenAPI document matches the routes the app serves."""
from __future__ import annotations

import re
from pathlib import Path

WEBAPP = Path(__file__).resolve().parents[1] / "webapp"


def served_routes(app) -> set[tuple[str, str]]:
    return {(re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower()) for rule in app.url_map.iter_rules()
            for method in rule.methods - {"HEAD", "OPTIONS"} if rule.endpoint != "static"}


def test_openapi_names_exactly_the_served_routes(app, client):
    spec = client.get("/openapi.json").json
    documented = {(path, method) for path, item in spec["paths"].items() for method in item}
    assert documented == served_routes(app)


def test_documented_parameters_exist_in_the_views(client):
    spec = client.get("/openapi.json").json
    source = "".join((WEBAPP / f"{name}.py").read_text() for name in ("api", "cluster", "dashboard", "health"))
    for item in spec["paths"].values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "path":
                    continue
                assert re.search(rf"""args.get\(\s*["']{parameter['name']}["']""", source), parameter["name"]
