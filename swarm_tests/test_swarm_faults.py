"""Faults on the deployed stack, each with its measured recovery time and the invariants:
nothing acknowledged is lost, nothing is stored twice, no 5xx where the design promises none.

Each test leaves the stack converged again (it waits, as `make swarm-up` does).
"""
from __future__ import annotations

import re
import time

import pytest

from harness import swarm
from swarm_tests.load import SteadyLoad
from webapp.config import StorageSettings
from webapp.storage.keys import Keys

# The stack's web tier runs with the default key prefix and bucket count (docker-stack.yml sets neither).
KEYS = Keys(StorageSettings().key_prefix, StorageSettings().key_buckets)


def converged(stack, timeout: float = 240) -> None:
    swarm.wait_converged(stack.engine, timeout=timeout)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5) -> float:
    """Seconds until `predicate()` is true."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout:.0f} s"
        time.sleep(interval)
    return time.monotonic() - started


def report(fault: str, recovery_s: float, detail: str) -> None:
    print(f"\n    FAULT {fault}: recovered in {recovery_s:.1f} s; {detail}")


def test_kill_a_web_task_under_steady_load(stack):
    converged(stack)
    with SteadyLoad(stack, f"swarm-fault-web-{int(time.time())}") as load:
        time.sleep(5)
        victim = stack.containers("web")[0]
        killed_at = time.monotonic()
        stack.docker("kill", "--signal", "KILL", victim)
        recovery = wait_for(lambda: victim not in stack.containers("web")
                            and swarm.service_status(stack.engine)["web"] == (5, 5), 120,
                            "five healthy web tasks again")
        time.sleep(5)
    outage = [t - killed_at for t, _ in load.failures if t >= killed_at]
    detail = load.check_nothing_lost_nothing_twice()
    report("kill -9 one web task", recovery,
           f"{detail}; client-visible failures within {max(outage, default=0):.1f} s of the kill")


def test_kill_the_edge_leaders_task(stack):
    converged(stack)
    cluster = stack.get("/api/v1/cluster").json()["groups"]["boiler-1"]
    leader, epoch = cluster["leader"], cluster["epoch"]
    victim = next(c for c in stack.containers("edge") if stack.inspect(c)["Config"]["Hostname"] == f"edge-{leader}")
    before = stack.get("/listar?sensor=boiler-1&count=1").json()["readings"][-1]["timestamp"]
    killed_at_ms = int(time.time() * 1000)
    stack.docker("kill", "--signal", "KILL", victim)

    def new_term():
        group = stack.get("/api/v1/cluster").json()["groups"]["boiler-1"]
        return group["epoch"] > epoch and group["leader"] is not None

    def new_round_stored():
        newest = stack.get("/listar?sensor=boiler-1&count=1").json()["readings"]
        return newest and newest[-1]["timestamp"] > killed_at_ms

    elected = wait_for(new_term, 90, "a new edge leader (higher epoch)")
    recovery = elected + wait_for(new_round_stored, 90, "a fused round stored after the kill")
    group = stack.get("/api/v1/cluster").json()["groups"]["boiler-1"]
    term = group["term"]
    readings = stack.get("/listar?sensor=boiler-1&count=1000").json()["readings"]
    stamps = [r["timestamp"] for r in readings]
    assert len(stamps) == len(set(stamps)), "a round stored twice"
    # The new term continues the round numbers: none skipped, none reused.
    assert term["first_round"] == term["previous"]["round"] + 1, term
    gap = min((t for t in stamps if t > killed_at_ms), default=0) - max(t for t in stamps if t <= before)
    report("kill -9 the edge leader's task", recovery,
           f"new leader {group['leader']} (epoch {epoch} -> {group['epoch']}) after {elected:.1f} s; "
           f"first round of the term {term['first_round']} = previous {term['previous']['round']} + 1; "
           f"{len(stamps)} rounds listed, 0 twice; gap in the series across the kill {gap / 1000:.1f} s")
    converged(stack)


def test_stop_the_model_server_detectors_abstain_without_5xx(stack):
    converged(stack)
    sensor = f"swarm-fault-model-{int(time.time())}"
    for n in range(40):   # history, so only the model server can degrade the panel
        stack.get(f"/detectar?dato={21.5 + 0.1 * (n % 3)}&sensor={sensor}", key=True)
    statuses, degraded = [], set()
    try:
        stack.docker("service", "scale", "--detach", f"{swarm.STACK}_tf-serving=0")
        wait_for(lambda: not stack.containers("tf-serving"), 60, "the model server stopped")
        for n in range(15):
            response = stack.get(f"/detectar?dato={21.5 + 0.1 * (n % 3)}&sensor={sensor}", key=True)
            statuses.append(response.status_code)
            degraded |= set(response.json().get("degraded", []))
    finally:
        stack.docker("service", "scale", "--detach", f"{swarm.STACK}_tf-serving=2")
    restarted = time.monotonic()

    def full_panel():
        response = stack.get(f"/detectar?dato=21.5&sensor={sensor}", key=True)
        return response.status_code == 201 and not {"autoencoder", "lstm"} & set(response.json()["degraded"])

    recovery = wait_for(full_panel, 180, "the learned detectors voting again", interval=2)
    assert all(status == 201 for status in statuses), statuses
    assert {"autoencoder", "lstm"} <= degraded, degraded
    report("model server stopped (tf-serving scaled to 0)", recovery,
           f"{len(statuses)} /detectar while down: all 201, degraded {sorted(degraded)}; "
           f"full panel {time.monotonic() - restarted:.1f} s after scaling back to 2")
    converged(stack)


@pytest.mark.timeout(600)   # five tasks, one at a time, `delay: 10s` between them
def test_rolling_update_of_web_under_steady_load_fails_no_request(stack):
    """`docker service update` (start-first, one task at a time) while clients write."""
    converged(stack)
    before = set(stack.containers("web"))
    started = time.monotonic()
    with SteadyLoad(stack, f"swarm-update-web-{int(time.time())}", rate=4) as load:
        time.sleep(3)
        stack.docker("service", "update", "--detach", "--force", f"{swarm.STACK}_web")
        converged(stack, timeout=400)
        time.sleep(3)
    took = time.monotonic() - started
    assert not before & set(stack.containers("web")), "every web task replaced"
    detail = load.check_nothing_lost_nothing_twice()
    report("rolling update of web (--force, start-first)", took, detail)
    assert not load.failures, load.failures


def redis_master(stack) -> str:
    """The master's announced name as the Sentinels see it (e.g. "redis-1")."""
    sentinel = stack.containers("redis-sentinel-1")[0]
    out = stack.docker("exec", sentinel, "sh", "-c",
                       "REDISCLI_AUTH=$(cat /run/secrets/redis_password) /opt/redis-stack/bin/redis-cli "
                       "-p 26379 SENTINEL get-master-addr-by-name aeroguard").stdout.split()
    return out[0]


@pytest.mark.timeout(300)
def test_kill_the_redis_masters_task_under_steady_load(stack):
    converged(stack)
    master = redis_master(stack)
    with SteadyLoad(stack, f"swarm-fault-redis-{int(time.time())}") as load:
        time.sleep(5)
        killed_at = time.monotonic()
        stack.docker("kill", "--signal", "KILL", stack.containers(master)[0])
        promoted = wait_for(lambda: redis_master(stack) != master, 60, "Sentinel promoting the replica")
        # Writes resume: no failed attempt for 5 s.
        wait_for(lambda: time.monotonic() - max((t for t, _ in load.failures), default=killed_at) > 5,
                 90, "writes resuming")
        converged(stack)
    resumed = max((t - killed_at for t, _ in load.failures if t >= killed_at), default=0.0)
    detail = load.check_nothing_lost_nothing_twice()
    report("kill -9 the Redis master's task", resumed,
           f"{master} -> {redis_master(stack)} promoted by Sentinel after {promoted:.1f} s; "
           f"last failed write {resumed:.1f} s after the kill; {detail}")


# --- ZooKeeper -----------------------------------------------------------------------------

ZK_SERVICES = ("zk1", "zk2", "zk3")
# The stack's healthcheck speaks the four-letter words the same way (no nc in the image).
SRVR = "exec 3<>/dev/tcp/127.0.0.1/2181 && printf srvr >&3 && cat <&3"


def zk_mode(stack, service: str) -> str | None:
    """`leader`, `follower`, or None (no task, or not serving: e.g. looking for a quorum)."""
    for container in stack.containers(service):
        out = stack.docker("exec", container, "bash", "-c", SRVR, check=False).stdout
        match = re.search(r"^Mode: (\w+)", out, re.MULTILINE)
        if match:
            return match.group(1)
    return None


def zk_leader(stack) -> str | None:
    return next((s for s in ZK_SERVICES if zk_mode(stack, s) == "leader"), None)


def redis_cli(stack, *args: str) -> list[str]:
    """`redis-cli ARGS` on the current master, one line per value."""
    master = stack.containers(redis_master(stack))[0]
    return stack.docker("exec", master, "sh", "-c",
                        'REDISCLI_AUTH=$(cat /run/secrets/redis_password) exec /opt/redis-stack/bin/redis-cli "$@"',
                        "sh", *args).stdout.split()


def stored_rounds(stack, group: str, since_ms: int) -> list[tuple[int, int, int]]:
    """(timestamp, epoch, round) of every aggregate of `group` stored from `since_ms`, by time:
    the members of the web tier's ``group:epoch:round`` idempotency set (webapp/storage/scripts.py)."""
    flat = redis_cli(stack, "ZRANGEBYSCORE", KEYS.group(group, "done"), str(since_ms), "+inf", "WITHSCORES")
    pairs = zip(flat[::2], flat[1::2])
    return [(int(float(ts)), *map(int, member.split(":"))) for member, ts in pairs]


def rounds_never_stored(stack, group: str, since: str) -> dict[str, set[int]]:
    """Rounds the edge logged as never to be stored, by design (edge/leader.py, edge/delivery.py):
    `aborted`: trigger issued, then the leader's ZooKeeper connection was suspended mid-round
    (never fused, never sent); `stale`: sent by a leader whose epoch a newer leader had already
    fenced off (409, dropped)."""
    logs = stack.docker("service", "logs", "--raw", "--since", since, f"{swarm.STACK}_edge")
    text = logs.stdout + logs.stderr
    return {"aborted": {int(n) for n in re.findall(r"round (\d+) aborted", text)},
            "stale": {int(n) for n in re.findall(rf"rejected {re.escape(group)}:\d+:(\d+): stale epoch", text)}}


@pytest.mark.timeout(300)
def test_kill_the_zookeeper_leaders_task_under_steady_load(stack):
    """kill -9 the ZooKeeper leader while clients write and the edge group runs rounds."""
    converged(stack)
    group = "boiler-1"
    leader = zk_leader(stack)
    assert leader, "no ZooKeeper server says `Mode: leader`"
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 1))
    start_ms = int(time.time() * 1000)
    cluster = stack.get("/api/v1/cluster").json()["groups"][group]
    with SteadyLoad(stack, f"swarm-fault-zk-{int(time.time())}") as load:
        time.sleep(5)
        assert stored_rounds(stack, group, start_ms), "the edge group stores no rounds before the fault"
        killed_at_ms = int(time.time() * 1000)
        stack.docker("kill", "--signal", "KILL", stack.containers(leader)[0])
        new_leader = None

        def elected() -> bool:
            nonlocal new_leader
            new_leader = next((s for s in ZK_SERVICES if s != leader and zk_mode(stack, s) == "leader"), None)
            return new_leader is not None

        election = wait_for(elected, 60, "a new ZooKeeper leader among the two left", interval=0.2)

        def new_round_judged() -> bool:
            recent = stack.get(f"/api/v1/sensors/{group}?count=20").json().get("recent", [])
            return any(r["timestamp"] > killed_at_ms and r.get("verdict") is not None for r in recent)

        recovery = election + wait_for(new_round_judged, 90, "a round issued after the kill stored and judged",
                                       interval=0.2)
        time.sleep(5)
    converged(stack)   # the killed server is back, as a follower
    detail = load.check_nothing_lost_nothing_twice()

    rounds = stored_rounds(stack, group, start_ms)
    after = [r for r in rounds if r[0] > killed_at_ms]
    assert after, "no round stored after the kill"
    numbers = [n for _, _, n in rounds]
    assert len(numbers) == len(set(numbers)), f"a round stored twice: {numbers}"
    assert numbers == sorted(numbers), f"rounds stored out of order: {numbers}"
    stamps = [ts for ts, _, _ in rounds]
    assert len(stamps) == len(set(stamps)), "two rounds with one timestamp"
    # None skipped: every round number from the first to the last is stored, but the ones the
    # edge logged as never to be stored (aborted mid-round, or fenced off as stale).
    never = rounds_never_stored(stack, group, since)
    missing = set(range(numbers[0], numbers[-1] + 1)) - set(numbers)
    unexplained = missing - never["aborted"] - never["stale"]
    assert not unexplained, f"rounds issued but neither stored, aborted nor fenced off: {sorted(unexplained)}"
    # The group runs on: its newest round may be stored and still being judged as this reads, so
    # a round counts as unjudged only if it still has no verdict a few seconds later.
    def unjudged() -> set[int]:
        recent = stack.get(f"/api/v1/sensors/{group}?count=300").json()["recent"]
        return {r["timestamp"] for r in recent if r["timestamp"] >= start_ms and r.get("verdict") is None}

    first = unjudged()
    if first:
        time.sleep(5)
    still = sorted(first & unjudged())
    assert not still, f"rounds stored without a verdict: {still}"
    now = stack.get("/api/v1/cluster").json()["groups"][group]
    epochs = sorted({e for _, e, _ in rounds})
    gap = min(t for t in stamps if t > killed_at_ms) - max((t for t in stamps if t <= killed_at_ms), default=start_ms)
    report("kill -9 the ZooKeeper leader's task", recovery,
           f"{leader} -> {new_leader} elected after {election:.1f} s; edge leader {cluster['leader']} -> "
           f"{now['leader']} (epochs {epochs}); rounds {numbers[0]}..{numbers[-1]}: {len(numbers)} stored, "
           f"0 twice, not stored by design: aborted mid-round {sorted(never['aborted'] & missing) or 'none'}, "
           f"fenced off as stale {sorted(never['stale'] & missing) or 'none'}; 0 otherwise missing, all judged; "
           f"gap in the series across the kill {gap / 1000:.1f} s; /nuevo load: {detail}")


# --- a broken release -----------------------------------------------------------------------

# A release whose code does not import: the web image with a command that fails at once, as
# gunicorn's would. Built FROM the running image, so the build is one metadata layer.
BROKEN_DOCKERFILE = """FROM {image}
CMD ["python", "-c", "import webapp.this_module_does_not_exist"]
"""


def update_state(stack, service: str) -> tuple[str, str]:
    out = stack.docker("service", "inspect", "--format",
                       "{{if .UpdateStatus}}{{.UpdateStatus.State}}|{{.UpdateStatus.Message}}{{else}}|{{end}}",
                       f"{swarm.STACK}_{service}").stdout.strip()
    state, _, message = out.partition("|")
    return state, message


def web_tasks(stack) -> dict[str, str]:
    """Every web task Swarm keeps (history too): ID -> "image<TAB>current state<TAB>error"."""
    out = stack.docker("service", "ps", "--no-trunc", "--format", "{{.ID}}\t{{.Image}}\t{{.CurrentState}}\t{{.Error}}",
                       f"{swarm.STACK}_web").stdout
    return {line.split("\t", 1)[0]: line.split("\t", 1)[1] for line in out.splitlines()}


@pytest.mark.timeout(400)
def test_a_broken_web_image_is_rolled_back_automatically_under_steady_load(stack):
    """`docker service update --image <broken>` of web: Swarm rolls back by itself
    (update_config: failure_action rollback, monitor 30s, max_failure_ratio 0)."""
    converged(stack)
    good = stack.service_image("web")
    broken = f"aeroguard-broken:{good.rsplit(':', 1)[-1]}"
    stack.engine.docker("build", "-t", broken, "-", input=BROKEN_DOCKERFILE.format(image=good))
    before = set(stack.containers("web"))
    history = set(web_tasks(stack))
    try:
        with SteadyLoad(stack, f"swarm-rollback-web-{int(time.time())}") as load:
            time.sleep(3)
            started = time.monotonic()
            stack.docker("service", "update", "--detach", "--no-resolve-image", "--image", broken,
                         f"{swarm.STACK}_web")
            states: list[tuple[float, str, str]] = []   # (seconds after the update, state, message)

            def rolled_back() -> bool:
                state = update_state(stack, "web")
                if not states or states[-1][1:] != state:
                    states.append((time.monotonic() - started, *state))
                return state[0] == "rollback_completed"

            took = wait_for(rolled_back, 300, "Swarm rolling web back by itself")
            converged(stack)
            healthy = time.monotonic() - started
            time.sleep(3)
    finally:
        if stack.service_image("web") != good:   # never leave the stack on the broken image
            stack.docker("service", "update", "--detach", "--no-resolve-image", "--image", good, f"{swarm.STACK}_web")
            converged(stack)
    tasks = {task: line for task, line in web_tasks(stack).items() if task not in history}
    tried = [line for line in tasks.values() if line.startswith(broken)]
    assert tried, f"no task ever ran {broken}: {tasks}"
    assert stack.service_image("web") == good
    containers = stack.containers("web")
    assert len(containers) == 5
    assert {stack.inspect(c)["Config"]["Image"] for c in containers} == {good}
    assert swarm.service_status(stack.engine)["web"] == (5, 5)
    detail = load.check_nothing_lost_nothing_twice()
    kept = len(before & set(containers))
    errors = sorted({t.split("\t")[2] for t in tried if t.split("\t")[2]})
    report("docker service update --image <broken> of web", took,
           "; ".join(f"{s} at {t:.1f} s ({m})" for t, s, m in states) +
           f"; five healthy tasks on {good} {healthy:.1f} s after the update ({kept} of the 5 old tasks "
           f"never stopped); {len(tried)} task(s) of {broken}, errors {errors}; {detail}")
    assert not load.failures, load.failures
