"""`Drill`: a stack (`OwnStack` or `AttachedStack`) under fault; each ``fault_*`` method injects one.

Recovery is the time from the fault (or, for an outage, from its repair) to the next
aggregate the web tier stores. Budgets (issue 4): leader kill -9 <= T + tickTime + period;
SIGTERM <= one period; measured -> stored p99 <= 100 ms at a 1 s period. `Drill.finish` turns
a fault's `Row` into its result: recovery, rounds missed, readings lost and duplicated, and the
invariants (`harness.faults.invariants.check_invariants`).
"""
from __future__ import annotations

import json
import signal
import time
from dataclasses import dataclass
from dataclasses import field

from kazoo.exceptions import NoNodeError

from harness.drill.stacks import TICK_S
from harness.drill.stacks import AttachedStack
from harness.drill.stacks import OwnStack
from harness.faults.event_logs import all_events
from harness.faults.invariants import check_invariants
from harness.faults.znodes import leader_of
from harness.faults.znodes import set_config
from harness.process import wait_until


@dataclass
class Row:
    fault: str
    started: float
    recovery_s: float | None = None
    budget_s: float | None = None
    ended: float = 0.0
    notes: str = ""
    extra_ok: bool = True
    result: dict = field(default_factory=dict)


class Drill:
    """A stack (`OwnStack` or `AttachedStack`) under fault; each ``fault_*`` method injects one."""

    def __init__(self, stack: OwnStack | AttachedStack, warmup_rounds: int = 12, quiet_rounds: int = 20) -> None:
        self.stack = stack
        self.warmup_rounds = warmup_rounds
        self.quiet_rounds = quiet_rounds
        self.rows: list[Row] = []
        self.quiet: list[tuple[float, float]] = []
        self.zk = None
        self._saved_config: tuple[bool, bytes] | None = None

    @property
    def period(self) -> float:
        return self.stack.period

    @property
    def T(self) -> float:
        return self.stack.T

    # stack ------------------------------------------------------------------------------------
    def up(self) -> None:
        from kazoo.client import KazooClient
        from kazoo.retry import KazooRetry

        self.stack.prepare()
        self.zk = KazooClient(self.stack.hosts, timeout=4.0, connection_retry=KazooRetry(max_tries=-1, max_delay=1.0))
        self.zk.start(timeout=30)
        self.stack.up(self.zk)
        self.leader()
        # Warm up past the web tier's first full window (its learned detectors load then), then
        # measure latency over a quiet stretch.
        self.settle(self.warmup_rounds)
        self.steady(self.quiet_rounds)

    def down(self) -> None:
        """Put the config back, make the stack whole again (attached) or remove it (own)."""
        try:
            if self._saved_config is not None and self.zk is not None:
                self._restore_config()
            self.stack.heal()
        finally:
            if self.zk is not None:
                self.zk.stop()
                self.zk.close()
            self.stack.down()

    @property
    def _config_path(self) -> str:
        return f"{self.stack.root}/config"

    def _save_config(self) -> None:
        if self._saved_config is None:
            found = self.zk.exists(self._config_path)
            self._saved_config = (True, self.zk.get(self._config_path)[0]) if found else (False, b"")

    def _restore_config(self) -> None:
        """The cluster config as it was before the drill changed it (absent again if it was)."""
        existed, data = self._saved_config
        if existed:
            set_config(self.zk, data.decode(), root=self.stack.root)
        elif self.zk.exists(self._config_path):
            self.zk.delete(self._config_path)
        self._saved_config = None

    def steady(self, rounds: int) -> None:
        """Let `rounds` rounds pass without a fault; latency is measured over these stretches."""
        start = time.time()
        self.settle(rounds)
        self.quiet.append((start, time.time()))

    def leader(self, above: int = -1, timeout: float = 30.0):
        def probe():
            found = leader_of(self.zk, self.stack.group, self.stack.root)
            return found if found and found[1] > above and found[0] in self.stack.edges else None
        node_id, epoch = wait_until(probe, timeout, f"a leader above epoch {above}")
        return self.stack.edges[node_id], epoch

    def settle(self, rounds: int, timeout: float = 60.0) -> None:
        now = time.time()
        wait_until(lambda: len(self.stack.recorder.after(now)) >= rounds, timeout, f"{rounds} stored rounds",
                   interval=0.1)

    def next_stored(self, after: float, epoch: int | None = None, timeout: float = 60.0) -> float:
        return wait_until(lambda: next((s.answered for s in self.stack.recorder.after(after)
                                        if epoch is None or s.doc["epoch"] == epoch), None), timeout,
                          "the next stored aggregate")

    def restart(self, edge) -> None:
        """Start `edge` again and wait until its new process (not the old session) is registered."""
        edge.stop()
        edge.start()
        path = f"{self.stack.root}/groups/{self.stack.group}/nodes/{edge.node_id}"

        def registered() -> bool:
            try:
                return json.loads(self.zk.get(path)[0]).get("pid") == edge.pid
            except (NoNodeError, ValueError):
                return False

        wait_until(registered, 30, f"{edge.node_id} registered again")

    def events(self) -> list[dict]:
        return all_events(self.stack.edges.values())

    # faults -----------------------------------------------------------------------------------
    def fault_leader_kill9(self) -> Row:
        edge, epoch = self.leader()
        row = Row("leader kill -9", time.time(), budget_s=self.T + TICK_S + self.period)
        edge.kill()
        _, new_epoch = self.leader(above=epoch)
        row.recovery_s = self.next_stored(row.started, new_epoch) - row.started
        self.restart(edge)
        return row

    def fault_leader_sigterm(self) -> Row:
        edge, epoch = self.leader()
        row = Row("leader SIGTERM", time.time(), budget_s=self.period)
        edge.stop()
        _, new_epoch = self.leader(above=epoch)
        row.recovery_s = self.next_stored(row.started, new_epoch) - row.started
        self.restart(edge)
        return row

    def fault_leader_paused(self) -> Row:
        edge, epoch = self.leader()
        row = Row("leader SIGSTOP 2T, SIGCONT", time.time(), budget_s=self.T + TICK_S + self.period)
        edge.signal(signal.SIGSTOP)
        _, new_epoch = self.leader(above=epoch)
        row.recovery_s = self.next_stored(row.started, new_epoch) - row.started
        wait_until(lambda: time.time() > row.started + 2 * self.T, 3 * self.T, "the pause")
        resumed = time.time()
        edge.signal(signal.SIGCONT)
        wait_until(lambda: any(e["kind"] == "registered" and e["t"] > resumed for e in edge.events()), 30,
                   "the paused leader rejoined")
        zombie = [e for e in edge.events() if e["t"] > resumed and e["kind"] == "trigger"
                  and e["epoch"] == epoch]
        row.extra_ok = not zombie
        row.notes = f"old epoch triggers after resume: {len(zombie)}"
        return row

    def _zk_node_down(self, index: int, name: str) -> Row:
        _, epoch = self.leader()
        row = Row(name, time.time(), budget_s=1.0)  # pause beyond one period
        self.stack.ensemble.kill_node(index)
        self.settle(5)
        row.recovery_s = max(self._longest_gap(row.started) - self.period, 0.0)
        self.stack.ensemble.start_node(index)
        self.stack.ensemble.wait_ready(60)
        lost = [e for e in self.events() if e["t"] > row.started and e.get("state") == "LOST"]
        same = self.leader()[1] == epoch
        row.extra_ok = same and not lost
        row.notes = f"pause beyond one period; same leader: {same}, sessions lost {len(lost)}"
        return row

    def fault_zk_follower_down(self) -> Row:
        leader = self.stack.ensemble.leader()
        return self._zk_node_down(next(i for i in range(3) if i != leader), "ZooKeeper follower kill -9")

    def fault_zk_leader_down(self) -> Row:
        return self._zk_node_down(self.stack.ensemble.leader(), "ZooKeeper leader kill -9")

    def fault_quorum_lost(self) -> Row:
        _, epoch = self.leader()
        leader = self.stack.ensemble.leader()
        down = [leader, next(i for i in range(3) if i != leader)]
        row = Row("ZooKeeper quorum lost 3T", time.time(), budget_s=self.T + 2.0)
        for index in down:
            self.stack.ensemble.kill_node(index)
        wait_until(lambda: time.time() > row.started + 3 * self.T, 4 * self.T, "three session timeouts")
        restarting = time.time()
        for index in down:
            self.stack.ensemble.start_node(index)
        # Recovery counts from the moment a quorum serves again (not from the JVMs' start).
        wait_until(lambda: sum(self.stack.ensemble.mode(i) in ("leader", "follower") for i in range(3)) >= 2, 60,
                   "a ZooKeeper quorum again")
        repaired = time.time()
        row.recovery_s = self.next_stored(repaired) - repaired
        during = [e for e in self.events() if e["kind"] in ("trigger", "delivery")
                  and row.started + self.T < e.get("sent_at", e["t"]) < restarting]
        row.extra_ok = self.leader()[1] == epoch and not during
        row.notes = f"same leader: {self.leader()[1] == epoch}; triggers/POSTs while cut off: {len(during)}"
        self.stack.ensemble.wait_ready(60)
        return row

    def fault_follower_kill9(self) -> Row:
        leader, _ = self.leader()
        edge = next(e for e in self.stack.edges.values() if e is not leader)
        row = Row("follower kill -9", time.time(),
                  budget_s=1.8 * self.period + 0.5)  # period + round timeout + delivery
        edge.kill()
        row.recovery_s = self.next_stored(row.started) - row.started
        nodes = f"{self.stack.root}/groups/{self.stack.group}/nodes"
        gone = wait_until(lambda: edge.node_id not in self.zk.get_children(nodes), 30,
                          "the dead follower left discovery")
        row.notes = f"left discovery after {time.time() - row.started:.1f} s" if gone else ""
        self.restart(edge)
        return row

    def fault_web_down(self, outage_s: float = 10.0) -> Row:
        row = Row(f"web tier down {outage_s:.0f} s", time.time(), budget_s=2.0 + self.period)
        self.stack.web.stop()
        wait_until(lambda: time.time() > row.started + outage_s, outage_s + 1, "the outage")
        repaired = time.time()
        self.stack.web.start()
        row.recovery_s = self.next_stored(repaired) - repaired
        triggered = {e["round"] for e in self.events() if e["kind"] == "trigger" and e["t"] > row.started}
        wait_until(lambda: triggered <= {s.doc["round"] for s in self.stack.recorder.after(row.started)}, 60,
                   "the spool replayed")
        row.notes = f"replayed {len(triggered)} rounds in {time.time() - repaired:.1f} s"
        return row

    def fault_reconfig(self) -> Row:
        """Invalid values, then 200 quick sets; the config in force before is restored afterwards."""
        pids = {n: e.pid for n, e in self.stack.edges.items()}
        row = Row("hot reconfig: bad values, 200 sets", time.time(), budget_s=1.0)
        self._save_config()
        try:
            rejected = [self._rejected_by_all(bad)
                        for bad in ('{"sampling_period_s": 1', '{"sampling_period_s": 0}', '{"colour": 1}')]
            burst = time.time()
            final = round(self.period * 0.8, 3)
            for i in range(200):
                set_config(self.zk, {"sampling_period_s": final if i == 199 else round(self.period + i / 1000, 3),
                                     "api_urls": self.stack.api_urls}, root=self.stack.root)
            last_set = time.time()

            def applied():
                times = [next((e["t"] for e in edge.events("config") if e["t"] > burst
                               and e["config"]["sampling_period_s"] == final), None)
                         for edge in self.stack.edges.values()]
                return max(times) if all(times) else None

            # A node may apply the last value before the writer's set() returns: never below 0.
            row.recovery_s = max(0.0, wait_until(applied, 10, "every node applied the last value") - last_set)
        finally:
            self._restore_config()
        edges = self.stack.edges.values()
        same = {n: e.pid for n, e in self.stack.edges.items()} == pids and all(e.alive() for e in edges)
        row.extra_ok = same and all(rejected)
        row.notes = (f"I7 (no restart): {'ok' if same else 'FAIL'}; 3 invalid values rejected by every node; "
                     f"200 sets written in {last_set - burst:.2f} s, the last applied everywhere "
                     f"{row.recovery_s:.2f} s after it; config restored")
        return row

    def _rejected_by_all(self, bad: str) -> bool:
        at = time.time()
        set_config(self.zk, bad, root=self.stack.root)
        return wait_until(lambda: all(any(e["t"] > at for e in edge.events("config_rejected"))
                                      for edge in self.stack.edges.values()), 5, f"{bad} rejected")

    # report -----------------------------------------------------------------------------------
    def _longest_gap(self, after: float) -> float:
        arrivals = [after] + [s.answered for s in self.stack.recorder.after(after)]
        return max(b - a for a, b in zip(arrivals, arrivals[1:]))

    def finish(self, row: Row) -> Row:
        self.settle(3)
        row.ended = time.time()
        stored = [s for s in self.stack.recorder.stored if row.started - 2 * self.period < s.answered <= row.ended]
        events = self.events()
        rounds = sorted({s.doc["round"] for s in stored})
        missed = sorted(set(range(rounds[0], rounds[-1] + 1)) - set(rounds)) if rounds else []
        stored_keys = {(s.doc["epoch"], s.doc["round"]) for s in stored}
        window = [e for e in events if e["kind"] == "reading" and row.started <= e["t"] <= row.ended - self.period]
        lost = [e for e in window if (e["epoch"], e["round"]) not in stored_keys]
        counted = [(r["node_id"], s.doc["round"]) for s in stored for r in s.doc["readings"] + s.doc["excluded"]]
        verdict = check_invariants(stored, events)
        store_ok, store_note = self.stack.check_store(stored)
        if not store_ok:
            row.extra_ok = False
            row.notes = "; ".join(n for n in (row.notes, store_note) if n)
        row.result = {"fault": row.fault, "recovery_s": None if row.recovery_s is None else round(row.recovery_s, 2),
                      "budget_s": row.budget_s, "rounds_missed": len(missed), "readings_lost": len(lost),
                      "readings_duplicated": len(counted) - len(set(counted)),
                      "invariants": "ok" if verdict.ok and row.extra_ok else
                      "FAIL " + json.dumps(verdict.failures)[:200] + ("" if row.extra_ok else " (extra check)"),
                      "notes": row.notes}
        self.rows.append(row)
        return row

    def latency(self) -> dict:
        """Measured -> stored over quiet stretches, and its edge part (measured -> POST sent)."""
        sent = {(e["epoch"], e["round"]): e["sent_at"] for e in self.events() if e["kind"] == "delivery"}
        total, edge, worst = [], [], []
        for s in self.stack.recorder.stored:
            if not any(a <= s.doc["timestamp"] / 1000 and s.answered <= b for a, b in self.quiet):
                continue  # triggered and stored inside a quiet stretch (not a replay after a fault)
            for r in s.doc["readings"]:
                total.append(s.answered * 1000 - r["measured_at"])
                worst.append((round(total[-1], 1), s.doc["round"], r["node_id"], round(s.answered, 3)))
                if (s.doc["epoch"], s.doc["round"]) in sent:
                    edge.append(sent[(s.doc["epoch"], s.doc["round"])] * 1000 - r["measured_at"])
        if not total:
            return {}
        return {"readings": len(total), "p50_ms": _pct(total, 0.5), "p99_ms": _pct(total, 0.99),
                "edge_p50_ms": _pct(edge, 0.5), "edge_p99_ms": _pct(edge, 0.99),
                "worst": sorted(worst, reverse=True)[:5]}  # (ms, round, node, answered at)


def _pct(samples: list[float], q: float) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)
