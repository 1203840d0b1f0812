"""The test-and-operations harness: real servers, the local stack, fault tools, the drill.

Everything the tests, the command-line entry points in ``scripts/`` and the fault drill share
to run AeroGuard's dependencies on this machine (as kazoo keeps ``kazoo.testing``). Nothing
here is imported by the product packages (``webapp``, ``edge``, ``contracts``), and nothing
here imports ``scripts``. Importing a module starts nothing.

Read first: `harness.process` (ports, PIDs, `ServerProcess`, `wait_until`), then
`harness.redis_server` and `harness.zookeeper` (one server kind each), then `harness.stack`
(the ``make up`` launcher built on them). Then, as needed: `harness.redis_topology` (Redis
with Sentinel), `harness.faults` (edge processes, a black-hole proxy, the invariant checker),
`harness.drill` (the edge fault drill), `harness.tfserving_standin` (TF Serving's protocols
over the real SavedModels), `harness.fuzz` (``make fuzz``'s hostile requests and checks),
`harness.swarm` (``make swarm-up``: docker-stack.yml on a private single-node Swarm) and
`harness.grafana` (the Grafana dashboards ``scripts/grafana_dashboards.py`` writes). The
measurements: `harness.bench` (``make bench``), `harness.served_web` and
`harness.detectar_profile` (``/detectar`` over gunicorn and in process: ``make
bench-detection``), `harness.soak` (``make soak``) and `harness.backup` (``make backup``).
"""
