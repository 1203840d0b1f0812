"""Every curl example in README.md works verbatim against a real local stack.

Each runs in bash, as a reader pastes it into a shell (``$(date +%s000)`` gives a fresh
timestamp). The only change made to a command is the port (the test's stack runs on free
ports) and ``--fail-with-body -sS`` after ``curl``, so a 4xx/5xx answer fails the test.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_PORT = "127.0.0.1:8000"


def readme_curls() -> list[str]:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line.startswith("curl ")]


def test_readme_has_curl_examples_for_the_main_endpoints():
    joined = "\n".join(readme_curls())
    for path in ("/nuevo", "/listar", "/detectar", "/api/v1/readings", "/api/v1/anomalies"):
        assert path in joined


@pytest.mark.slow
def test_every_readme_curl_works(local_stack):
    assert shutil.which("curl"), "curl is needed to check README's examples"
    port = local_stack["WEB_URL"].rsplit(":", 1)[1]
    for line in readme_curls():
        command = line.replace(README_PORT, f"127.0.0.1:{port}").replace("curl ", "curl --fail-with-body -sS ", 1)
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
        assert done.stdout.strip(), line


def configuration_table() -> list[tuple[str, str]]:
    """``(group, variable)`` of each row of README's web tier table (the first under
    "## Configuration"), whose bold rows name the groups."""
    section = (ROOT / "README.md").read_text().split("\n## Configuration\n", 1)[1]
    table = re.search(r"(?:^\|.*\n)+", section, flags=re.M).group(0).splitlines()[2:]
    rows, group = [], None
    for row in table:
        first = row.split("|")[1].strip()
        heading = re.fullmatch(r"\*\*(\w+)\*\*", first)
        if heading:
            group = heading.group(1)
        else:
            rows += [(group, name) for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", first)]
    return rows


def test_the_configuration_table_lists_every_setting_once_in_its_group():
    from webapp.config import Settings

    declared = list(dict.fromkeys((group, env) for group, _, env in Settings.variables()))  # API_KEYS: two fields
    gunicorn_conf = (ROOT / "webapp" / "gunicorn_conf.py").read_text()
    read_by_gunicorn = set(re.findall(r'os\.environ(?:\.get\(|\.setdefault\(|\[)"([A-Z0-9_]+)"', gunicorn_conf))
    listed = configuration_table()
    assert [row for row in listed if row[0] != "gunicorn"] == declared, "README lists Settings in declaration order"
    assert len({name for _, name in listed}) == len(listed), "each variable once"
    assert {name for group, name in listed if group == "gunicorn"} == read_by_gunicorn - {env for _, env in declared}
