"""The local stack: what ``make up`` / ``make run`` start, record in ``stack.json`` and stop.

A 3-node ZooKeeper ensemble (tickTime 500 ms), one redis-server with RedisTimeSeries (or, with
``REDIS=sentinel``, a master, a replica and 3 Sentinels: `harness.redis_topology`), the web
tier under gunicorn and an edge group, all on 127.0.0.1, with state (data, logs,
``stack.json``) under ``.run/``. Read in this order:

- `harness.stack.config`: `StackConfig`, the ports and folders, read from the environment;
- `harness.stack.services`: each service (``start``/``wait_ready``/``stop``/``records``/
  ``exports``) and `SERVICES`, the stack in start order;
- `harness.stack.launcher`: start and stop the services, ``stack.json``, `restart` of one
  recorded process (the fault drill's);
- `harness.stack.cli`: ``python -m scripts.stack run|up|status|down``.
"""
