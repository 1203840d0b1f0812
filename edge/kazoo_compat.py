"""Every use of kazoo internals, in one module, checked against the kazoo version it was written for.

kazoo's recipes do what the edge needs; four things they do not offer as API, so the edge
reaches past it here and nowhere else:

- **the election lock's retry** (`Lock._retry`): kazoo's backs off to 60 s between attempts;
  a contender waiting out a ZooKeeper outage would then rejoin up to a minute late. `election`
  replaces it with one capped at `LOCK_RETRY_MAX_DELAY_S`.
- **the lock node a contender holds** (`Lock.node`, named ``<uuid>__lock__<seq10>``): its
  sequence number is the leader's epoch (`lock_node`, `sequence`).
- **our own lock nodes after a failed attempt** (`Lock.prefix`): kazoo's clean-up is best
  effort and swallows errors; a lock node that outlives the attempt blocks the group, so
  `delete_own_lock_nodes` deletes every child that carries the attempt's prefix and lets
  the caller retry on an error.
- **the `LockingQueue`'s entries** (``<path>/entries``, `processing_element`): the leader reads
  a round's entries without taking them (`entries_path`), and after the round takes and
  consumes them through the recipe (`take`, `consume`), forgetting an entry whose lock went
  with a lost session so that it comes back (see `edge.rounds`).

The web tier needs none of these: it reads the leader with kazoo's public
`Election.contenders()` and the queue's depth from `LockingQueue.entries`.

The version check
-----------------
Importing this module raises `RuntimeError` unless the installed kazoo is `VERIFIED`, the
version ``requirements.txt`` pins. A mismatch therefore only happens when someone changes the
pin (or installs by hand), and that is exactly when these internals must be read again: a
renamed ``_retry`` would not fail, it would silently bring the one-minute rejoin back. Failing
at import makes the edge tests (and ``python -m edge``) fail at once instead of a warning
nobody reads in a device's log. To move to a new kazoo: read the four items above in its
``kazoo/recipe/lock.py`` and ``queue.py``, run ``tests/test_edge_node.py``,
``test_edge_rounds.py`` and ``test_edge_faults.py``, then change `VERIFIED` and the pin together.
"""
from __future__ import annotations

from kazoo.recipe.election import Election
from kazoo.recipe.queue import LockingQueue
from kazoo.retry import KazooRetry
from kazoo.version import __version__ as INSTALLED

VERIFIED = "2.11.0"
LOCK_RETRY_MAX_DELAY_S = 1.0


def check_version(installed: str = INSTALLED) -> None:
    """Raise `RuntimeError` unless `installed` is the kazoo version this module was verified against.

    >>> check_version("2.11.0")
    >>> check_version("2.12.0")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    RuntimeError: kazoo 2.12.0 is installed but edge/kazoo_compat.py was verified against kazoo 2.11.0 only; ...
    """
    if installed != VERIFIED:
        raise RuntimeError(f"kazoo {installed} is installed but edge/kazoo_compat.py was verified against kazoo "
                           f"{VERIFIED} only; read its docstring, check the kazoo internals it lists, then update "
                           f"VERIFIED with the pin in requirements.txt")


check_version()


def election(zk, path: str, identifier: str) -> Election:
    """A kazoo `Election` at `path` whose lock retries at least every `LOCK_RETRY_MAX_DELAY_S`."""
    contest = Election(zk, path, identifier)
    contest.lock._retry = KazooRetry(max_tries=None, max_delay=LOCK_RETRY_MAX_DELAY_S,
                                     sleep_func=zk.handler.sleep_func)
    return contest


def lock_node(contest: Election) -> str:
    """The name of the lock node `contest` holds (while its ``run`` callback leads)."""
    return contest.lock.node


def sequence(name: str) -> int:
    """The sequence number of a lock node, from its name.

    >>> sequence("0f3c9a__lock__0000000042")
    42
    """
    return int(name[-10:])


def delete_own_lock_nodes(zk, contest: Election) -> None:
    """Delete every lock node `contest`'s attempts created; a `KazooException` is the caller's to retry."""
    path = contest.lock.path
    for child in zk.get_children(path):
        if child.startswith(contest.lock.prefix):
            zk.delete(f"{path}/{child}")


def entries_path(queue: LockingQueue) -> str:
    """Where `queue` keeps its entries (``<path>/entries/entry-<prio>-<seq>``)."""
    return queue.path + queue.entries


def take(queue: LockingQueue) -> tuple[str, bytes] | None:
    """Lock the next entry without waiting: its name and value, or None when `queue` is empty."""
    raw = queue.get(timeout=0.0)
    if raw is None:
        return None
    return queue.processing_element[0], raw


def consume(queue: LockingQueue) -> None:
    """Consume the entry `take` locked; if its lock is gone, forget it: the entry comes back."""
    if not queue.consume():
        queue.processing_element = None
