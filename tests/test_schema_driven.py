"""Schema-driven requests (schemathesis) over the OpenAPI document: the app never answers 5xx.

Every operation of ``/openapi.json`` is called with requests generated from its schema
against the real app, Redis and ZooKeeper, with a valid API key, so the protected operations
are exercised past authentication. (Schemathesis' own pytest plugin does not run
under pytest 9, so the test draws each operation's cases through its Hypothesis strategy.)
"""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings as hsettings

from webapp import create_app
from webapp import shutdown

EXAMPLES_PER_OPERATION = 30


# schemathesis 4.32's strategies use the random module, which Hypothesis deprecates.
@pytest.mark.filterwarnings("ignore:Do not use the .random. module inside strategies")
def test_no_operation_answers_5xx(settings, zk_hosts, test_id, zk):
    app = create_app(settings.replace(zk_hosts=zk_hosts, zk_root=f"/t-{test_id}/aeroguard", api_keys=("k1",),
                                        admin_keys=("k1",)))
    try:
        schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 12
        seen: dict[str, set[int]] = {}
        for operation in operations:
            @given(case=operation.as_strategy())
            @hsettings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck),
                       database=None)
            def check(case):
                response = case.call(headers={"X-API-Key": "k1"})
                # A 403 for a name the other kind of writer owns (a sensor name /nuevo used earlier
                # in this run, reused as a group) passed validation: counted apart from key refusals.
                taken = response.status_code == 403 and "is the name of a series" in response.text
                seen.setdefault(operation.label, set()).add("name taken" if taken else response.status_code)
                assert response.status_code < 500, (case.method, case.path, case.query, case.body, response.text[:300])

            check()
        assert set(seen) == {operation.label for operation in operations}
        for label in ("GET /nuevo", "GET /detectar", "POST /api/v1/readings", "PUT /api/v1/config"):
            assert seen[label] - {400, 401, 403}, f"{label} never got past validation: {seen[label]}"
    finally:
        shutdown(app)
