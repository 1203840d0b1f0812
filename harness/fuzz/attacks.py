"""What `make fuzz` sends: a seeded generator of hostile requests over every endpoint (bad
numbers, NaN/inf, huge and deeply nested bodies, malformed JSON, bad sensor ids, path and query
junk, wrong methods and content types, valid readings and aggregates, and the attacks of issue
10: event amplification, label cardinality, epoch poisoning, a flood of new sensor ids)."""
from __future__ import annotations

import json
import random
import time
from collections import Counter
from dataclasses import dataclass
from dataclasses import field
from typing import Callable
from urllib.parse import quote
from urllib.parse import urlencode

SENSORS = ["s1", "s2", "fuzz-a", "Fuzz_B.3"]
BAD_SENSORS = ["", " ", "a" * 65, "../etc/passwd", "s1*", "s1:x", "ns=x", "s 1", "s1\n", "ü", "{s1}", "%00",
               "s1/readings", "*", "?", "s1;FLUSHALL", "\x00", "--", "a" * 5000]
BAD_NUMBERS = ["nan", "NaN", "inf", "-inf", "Infinity", "1e999", "-1e999", "0x1f", "1_0", "١٢", "1,5", "",
               " ", "null", "true", "1e", "e1", ".", "+", "--1", "1.2.3", "9" * 400, "1e-99999", "²"]
JUNK_PATHS = ["/", "/nuevo/", "/nuevo/x", "/api", "/api/v1", "/api/v1/readings/1", "/api/v2/readings", "/%2e%2e/etc",
              "/static/../webapp/config.py", "/static/%2e%2e/%2e%2e/etc/passwd", "/api/v1/sensors/../../x", "/x" * 300,
              "/api/v1/sensors/" + "a" * 3000, "/listar%00", "/metrics/x", "/openapi.json/x", "/%ff%fe"]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


FENCED_GROUP, FENCED_EPOCH = "fuzz-fenced", 3  # a group whose ZooKeeper election issued epoch 3


class Generator:
    """Seeded requests over every endpoint; valid ones carry increasing rounds per group."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.rounds: Counter[str] = Counter()
        self.invented: set[str] = set()  # made-up methods and group names: never a metric label
        # The request mix: each kind of request (a method returning a `Request`) and its weight.
        # A new attack is one method and one row here.
        mix: list[tuple[Callable[[], Request], int]] = [
            (self.reading, 2), (self.listar, 1), (self.aggregate, 2), (self.aggregate_json_junk, 1),
            (self.huge_body, 1), (self.anomalies, 1), (self.sensors, 1), (self.config, 1), (self.misc, 1),
            (self.junk_path, 1), (self.long_query, 1),
            (self.event_amplification, 1),  # issue 10: 100 aggregates x 64 excluded nodes in one POST
            (self.label_cardinality, 1),  # issue 10: made-up HTTP methods, many new groups
            (self.epoch_poisoning, 1),  # issue 10: an epoch no election issued, to fence a group off
            (self.sensor_flood, 2),  # issue 10: a new sensor id per request, to fill Redis
        ]
        self.kinds: list[Callable[[], Request]] = [kind for kind, weight in mix for _ in range(weight)]

    def next(self) -> Request:
        return self.rng.choice(self.kinds)()

    # --- parts -----------------------------------------------------------------------------
    def sensor(self) -> str:
        return self.rng.choice(SENSORS) if self.rng.random() < 0.6 else self.rng.choice(BAD_SENSORS)

    def number(self) -> str:
        r = self.rng.random()
        if r < 0.4:
            return repr(round(self.rng.uniform(-30, 120), 3))
        if r < 0.5:
            return str(self.rng.randint(-10**6, 10**6))
        return self.rng.choice(BAD_NUMBERS)

    def junk(self) -> object:
        return self.rng.choice([None, True, False, "", "x", [], {}, [1], {"a": 1}, -1, 2**64, 1.5, "1", "NaN",
                                float("nan"), float("inf"), -float("inf"), 1e308, "a" * 1000])

    def query(self, params: dict[str, str]) -> str:
        items = [(k, v) for k, v in params.items() if self.rng.random() < 0.9]
        if self.rng.random() < 0.1:
            items.append((self.rng.choice(["x", "sensor", "dato", ""]), self.rng.choice(BAD_SENSORS)))
        return urlencode(items, quote_via=quote) if items else ""

    # --- request kinds ---------------------------------------------------------------------
    def reading(self) -> Request:
        path = self.rng.choice(["/nuevo", "/detectar"])
        return Request("GET", f"{path}?{self.query({'dato': self.number(), 'sensor': self.sensor()})}")

    def listar(self) -> Request:
        def bound() -> str:
            return self.rng.choice([str(self.rng.randint(0, 2**63)), "-1", "abc", "1e3", "", str(2**70),
                                    str(int(time.time() * 1000))])
        params = {"sensor": self.sensor(), "count": self.rng.choice(["1", "100", "0", "-5", "10001", "x", "1e2"]),
                  "from": bound(), "to": bound()}
        return Request("GET", f"/listar?{self.query(params)}")

    def valid_aggregate(self) -> dict:
        group = self.rng.choice(SENSORS)
        self.rounds[group] += 1
        return {"group": group, "epoch": 1, "round": self.rounds[group], "timestamp": int(time.time() * 1000),
                "value": round(self.rng.uniform(10, 40), 2),
                "readings": [{"node_id": f"n{i}", "value": 20.0 + i} for i in range(self.rng.randint(0, 3))]}

    def broken_aggregate(self) -> dict:
        item = self.valid_aggregate()
        field_ = self.rng.choice(["group", "epoch", "round", "timestamp", "value", "readings", "excluded", "extra"])
        action = self.rng.random()
        if action < 0.2 and field_ in item:
            del item[field_]
        elif field_ == "group":
            item["group"] = self.rng.choice(BAD_SENSORS + [self.junk()])
        elif field_ in ("readings", "excluded"):
            item[field_] = self.rng.choice([self.junk(), [{"node_id": self.rng.choice(BAD_SENSORS), "value": 1}],
                                            [{"node_id": "n1", "value": self.junk()}], [{}] * 70])
        elif field_ == "timestamp":
            item["timestamp"] = self.rng.choice([self.junk(), int(time.time() * 1000) + 10**9, -5, 2**63])
        else:
            item[field_] = self.junk()
        return item

    def aggregate(self) -> Request:
        r = self.rng.random()
        if r < 0.35:
            body: object = self.valid_aggregate()
        elif r < 0.8:
            body = self.broken_aggregate()
        else:
            count = self.rng.choice([0, 1, 3, 101])
            body = [self.broken_aggregate() if self.rng.random() < 0.5 else self.valid_aggregate()
                    for _ in range(count)]
        # A rejected list must store none of its valid members: rounds sent in one are spent.
        return self.post_json("/api/v1/readings", json.dumps(body, allow_nan=True).encode())

    def aggregate_json_junk(self) -> Request:
        valid = json.dumps(self.valid_aggregate())
        body = self.rng.choice([
            valid[: self.rng.randint(0, len(valid) - 1)], valid + "}", valid.replace(":", "=", 1), "",
            "null", "[]", "{}", '{"value": NaN}', "[" * 50_000 + "]" * 50_000, '{"a":' * 20_000, "\xff\xfe",
            valid.replace('"value": ', '"value": Infinity, "x": '), '"' + "a" * 1000])
        headers = {"Content-Type": self.rng.choice(["application/json", "text/plain",
                                                    "application/x-www-form-urlencoded",
                                                    "application/json; charset=latin-1", ""])}
        return Request("POST", "/api/v1/readings", body.encode("utf-8", "surrogatepass"), headers)

    def huge_body(self) -> Request:
        size = self.rng.choice([300 * 1024, 2 * 1024 * 1024])
        body = b'{"group": "s1", "value": 1, "pad": "' + b"a" * size + b'"}'
        return self.post_json(self.rng.choice(["/api/v1/readings", "/api/v1/config"]), body,
                              method=self.rng.choice(["POST", "PUT"]))

    def anomalies(self) -> Request:
        params = {"count": self.rng.choice(["1", "1000", "1001", "0", "x"]), "sensor": self.sensor(),
                  "kind": self.rng.choice(["decision", "sensor_fault", "x", "", "*"])}
        return Request("GET", f"/api/v1/anomalies?{self.query(params)}")

    def sensors(self) -> Request:
        if self.rng.random() < 0.3:
            return Request("GET", "/api/v1/sensors")
        return Request("GET", f"/api/v1/sensors/{quote(self.sensor(), safe='')}?{self.query({'count': self.number()})}")

    def config(self) -> Request:
        doc = self.rng.choice([{"period_s": self.junk()}, {"period_s": 1.0}, self.junk(), {"api_urls": [self.junk()]}])
        headers = {"Content-Type": "application/json"}
        if self.rng.random() < 0.5:
            headers["X-API-Key"] = self.rng.choice(["", "x", "a" * 500, "key"])
        return Request("PUT", f"/api/v1/config?{self.query({'group': self.sensor()})}",
                       json.dumps(doc, allow_nan=True).encode(), headers)

    def misc(self) -> Request:
        path = self.rng.choice(["/healthz", "/readyz", "/metrics", "/openapi.json", "/", "/api/v1/cluster",
                                "/static/" + quote(self.rng.choice(["x.js", "../config.py", "%2e%2e", "a" * 300]))])
        return Request(self.rng.choice(["GET"] * 4 + METHODS), path)

    def junk_path(self) -> Request:
        body = b"{}" if self.rng.random() < 0.3 else None
        return Request(self.rng.choice(METHODS), self.rng.choice(JUNK_PATHS), body)

    def long_query(self) -> Request:
        return Request("GET", f"/listar?sensor=s1&x={'a' * self.rng.choice([2100, 8000])}")

    def event_amplification(self) -> Request:
        """Many aggregates, each excluding the most nodes allowed: one request of 100 once wrote
        6,400 sensor-fault events and pushed decisions out of the capped event log. At most 30
        here: each aggregate is judged, and 100 of them can outlast the 10 s answer timeout on a
        busy machine (the 100 x 64 case is tests/test_growth.py's)."""
        items = []
        for _ in range(self.rng.choice([1, 10, 30])):
            item = self.valid_aggregate()
            item["excluded"] = [{"node_id": f"x{i}", "value": 99.0} for i in range(64)]
            items.append(item)
        if self.rng.random() < 0.2:
            items[self.rng.randrange(len(items))] = self.broken_aggregate()  # rejected whole: stores nothing
        return self.post_json("/api/v1/readings", json.dumps(items, separators=(",", ":"), allow_nan=True).encode())

    def label_cardinality(self) -> Request:
        """Label values a client could invent: a made-up HTTP method, or aggregates of new groups
        each with an excluded node (once one ``sensor_faults_total`` series per group)."""
        if self.rng.random() < 0.5:
            method = "".join(self.rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(self.rng.randint(3, 12)))
            self.invented.add(method)
            return Request(method, self.rng.choice(["/nuevo?dato=1", "/healthz", "/api/v1/readings", "/x"]))
        items = []
        for _ in range(self.rng.randint(1, 20)):
            group = f"made-up-{self.rng.getrandbits(40):010x}"
            self.invented.add(group)
            items.append({"group": group, "epoch": 1, "round": 1, "timestamp": int(time.time() * 1000),
                          "value": 20.0, "readings": [{"node_id": "n1", "value": 20.0}],
                          "excluded": [{"node_id": "n2", "value": 90.0}]})
        return self.post_json("/api/v1/readings", json.dumps(items).encode())

    def epoch_poisoning(self) -> Request:
        """An aggregate of `FENCED_GROUP` (whose election issued `FENCED_EPOCH`) with an epoch
        above it, which once moved the fence past every real leader; or the real leader's next
        round, which must go on being stored."""
        self.rounds[FENCED_GROUP] += 1
        poisoned = self.rng.random() < 0.7
        epoch = self.rng.choice([FENCED_EPOCH + 1, 2**31, 2**62]) if poisoned else FENCED_EPOCH
        body = {"group": FENCED_GROUP, "epoch": epoch, "round": self.rounds[FENCED_GROUP],
                "timestamp": int(time.time() * 1000), "value": 20.0, "readings": [{"node_id": "n1", "value": 20.0}]}
        return self.post_json("/api/v1/readings", json.dumps(body).encode())

    def sensor_flood(self) -> Request:
        """A reading for a sensor id never seen before: each once cost three keys for ever."""
        return Request("GET", f"/nuevo?dato=1&sensor=flood-{self.rng.getrandbits(48):012x}")

    def post_json(self, path: str, body: bytes, method: str = "POST") -> Request:
        return Request(method, path, body, {"Content-Type": "application/json"})
