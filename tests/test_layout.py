"""The code's layout: which package may import which, read from the import statements.

Every ``import`` and ``from … import`` of every module (those inside functions too) is an edge.
Packages: the web tier's subpackages (`webapp.detection`, `webapp.inference`,
`webapp.storage`), the modules every layer of the web tier reads (`webapp.config`,
`webapp.environment`, `webapp.errors`), the rest of the web tier (`webapp`), and `edge`,
`contracts`, `harness`, `offline` and `scripts`. Their graph has no cycle; the web tier and
the edge never import offline training, the test harness or the scripts; and a web worker
with a remote inference backend loads neither `offline` nor TensorFlow.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOPS = ("webapp", "edge", "contracts", "harness", "offline", "scripts")
SUBPACKAGES = ("webapp.detection", "webapp.inference", "webapp.storage")
SHARED = ("webapp.config", "webapp.environment", "webapp.errors")
SERVING = ("webapp", "edge")  # what runs in production
OFFLINE_ONLY = ("offline", "harness", "scripts")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for top in TOPS for p in sorted((ROOT / top).rglob("*.py"))}


def imported(name: str, path: Path):
    """The project modules `name` imports, as module names (a name imported from a package that
    is not a module of it counts as the package)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                yield target


def package_of(module: str) -> str:
    for group in (*SUBPACKAGES, *SHARED):
        if module == group or module.startswith(group + "."):
            return group
    return module.split(".")[0]


def module_graph() -> dict[str, set[str]]:
    return {name: set(imported(name, path)) for name, path in MODULES.items()}


def package_graph() -> dict[str, dict[str, set[str]]]:
    """``{package: {imported package: {"module -> module", …}}}``."""
    graph: dict[str, dict[str, set[str]]] = {}
    for source, targets in module_graph().items():
        for target in targets:
            a, b = package_of(source), package_of(target)
            if a != b:
                graph.setdefault(a, {}).setdefault(b, set()).add(f"{source} -> {target}")
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycles_finds_a_cycle_and_only_it():
    assert cycles({"a": {"b"}, "b": {"a", "c"}, "c": set()}) == [["a", "b"]]
    assert cycles({"a": {"b"}, "b": {"c"}}) == []


def test_the_packages_import_each_other_without_a_cycle():
    graph = package_graph()
    assert {"webapp.detection", "webapp.inference", "offline", "scripts"} <= {package_of(m) for m in MODULES}
    found = cycles({a: set(edges) for a, edges in graph.items()})
    assert found == [], {tuple(c): {f"{a} -> {b}": sorted(graph[a][b]) for a in c for b in c if b in graph.get(a, {})}
                         for c in found}


def test_inference_never_imports_detection():
    """Detection asks inference for scores; inference is handed what it needs (the models folder)."""
    assert "webapp.detection" not in package_graph().get("webapp.inference", {})


def test_offline_modules_and_scripts_import_each_other_without_a_cycle():
    graph = module_graph()
    mine = {m: {t for t in graph[m] if package_of(t) in ("offline", "scripts", *SUBPACKAGES)}
            for m in graph if package_of(m) in ("offline", "scripts", *SUBPACKAGES)}
    assert cycles(mine) == []


def test_serving_code_never_imports_offline_harness_or_scripts():
    graph = package_graph()
    wrong = {f"{a} -> {b}": sorted(edges) for a, targets in graph.items() for b, edges in targets.items()
             if a.split(".")[0] in SERVING and b.split(".")[0] in OFFLINE_ONLY}
    assert wrong == {}


def test_a_web_worker_with_a_remote_backend_loads_neither_offline_nor_tensorflow(redis_server):
    """The app and its panel, built as a worker builds them (gRPC backend, nothing served)."""
    code = textwrap.dedent(f"""
        import json, sys
        from webapp import create_app, shutdown
        from webapp.config import Settings
        settings = Settings.from_env({{"REDIS_URL": "{redis_server.url}", "SERVING_HOST": "127.0.0.1",
                                       "SERVING_GRPC_PORT": "9", "AEROGUARD_ENV": "test"}})
        app = create_app(settings)
        assert app.extensions["panel"].names
        shutdown(app)
        loaded = [m for m in sys.modules if m.split(".")[0] in ("offline", "keras", "tensorflow", "sklearn")]
        print(json.dumps(loaded))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []



def scripts_imports(source: str) -> list[str]:
    """The ``scripts`` modules `source` imports (running ``python -m scripts.x`` is not importing)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.append(node.module)
    return [name for name in found if name == "scripts" or name.startswith("scripts.")]


def test_scripts_imports_finds_imports_not_commands():
    source = ("import os\nfrom scripts import train\nimport scripts.bench as b\nfrom . import scripts\n"
              "def f():\n    from scripts.soak import main\n"
              "run = ['python', '-m', 'scripts.fuzz']\n")
    assert scripts_imports(source) == ["scripts", "scripts.bench", "scripts.soak"]


def test_scripts_are_entry_points_that_nothing_imports():
    """scripts/ holds thin command lines over the libraries: the tests run them as subprocesses,
    and no test, library module or other script imports one (issue 13)."""
    files = [*sorted((ROOT / "tests").rglob("*.py")), *MODULES.values()]
    wrong = {str(path.relative_to(ROOT)): names for path in files
             if (names := scripts_imports(path.read_text(encoding="utf-8")))}
    assert wrong == {}
