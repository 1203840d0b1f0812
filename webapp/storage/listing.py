"""Reading stored readings back: a time range, the newest readings with their verdicts, and the
namespace's sensors a page at a time."""
from __future__ import annotations

from webapp.storage.base import StoreBase
from webapp.storage.base import _unavailable
from webapp.storage.base import executed


class Listing(StoreBase):
    """The reading side of `webapp.storage.Store`."""

    @_unavailable
    def read_range(self, sensor: str, start: int | str, end: int | str, count: int,
                   latest: bool = False) -> list[tuple[int, float]]:
        """Readings between `start` and `end` (ms or ``-``/``+``), in time order, at most `count`.

        With `latest`, the newest `count` of the range; otherwise the oldest (for paging).
        """
        key = self.keys.series(sensor, "readings")
        if not self.client.exists(key):
            return []
        ts = self.client.ts()
        if latest:
            samples = ts.revrange(key, start, end, count=count)
            samples.reverse()
        else:
            samples = ts.range(key, start, end, count=count)
        return [(int(t), float(v)) for t, v in samples]

    @_unavailable
    def recent(self, sensor: str, count: int) -> list[dict]:
        """The newest `count` readings, oldest first, each with its verdict if it was judged."""
        readings = self.read_range(sensor, "-", "+", count, latest=True)
        if not readings:
            return []
        verdict_key = self.keys.series(sensor, "verdict")
        verdicts = {}
        if self.client.exists(verdict_key):
            verdicts = {int(t): int(float(v)) for t, v in self.client.ts().range(verdict_key, readings[0][0], "+")}
        return [{"timestamp": t, "value": v, "verdict": verdicts.get(t)} for t, v in readings]

    @_unavailable
    def sensors(self, count: int, after: str = "") -> tuple[list[dict], bool]:
        """A page of this namespace's sensors in id order: the first `count` after `after`, each
        with its newest reading and verdict, and whether more follow.

        The names come from every bucket's registries (plain sensors and edge groups, one
        ``ZRANGE`` each, merged), the newest samples only of the page's sensors, bucket by bucket
        (``TS.MGET … sensor=(a,b,…)`` on the server holding that bucket: never across shards).
        """
        pipe = self.client.pipeline(transaction=False)
        for bucket in self.keys.all_buckets:
            for kind in ("sensors", "groups"):
                pipe.zrange(self.keys.registry(kind, bucket), 0, -1)
        names = sorted({name for batch in executed(pipe) for name in batch})
        page = [name for name in names if name > after][:count + 1]
        more, page = len(page) > count, page[:count]
        if not page:
            return [], False
        found = {name: {"sensor": name} for name in page}
        by_bucket: dict[int, list[str]] = {}
        for name in page:
            by_bucket.setdefault(self.keys.bucket(name), []).append(name)
        pipe = self.client.pipeline(transaction=False)
        asked = []
        for bucket, names_here in by_bucket.items():
            for kind in ("reading", "verdict"):
                filters = [f"ns={self.keys.namespace}", f"kind={kind}", f"sensor=({','.join(names_here)})"]
                self._at(self.keys.series(names_here[0], "readings"), "TS.MGET", "WITHLABELS", "FILTER", *filters,
                         pipe=pipe)
                asked.append(kind)
        for kind, entries in zip(asked, executed(pipe)):
            for entry in entries:
                (_, (labels, stamp, value)), = entry.items()
                if stamp is not None and labels["sensor"] in found:
                    found[labels["sensor"]][kind] = {"timestamp": int(stamp), "value": float(value)}
        return [found[name] for name in page], more
