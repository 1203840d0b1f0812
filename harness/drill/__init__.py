"""The edge fault drill (``python -m scripts.drill``, ``make drill``).

- `harness.drill.cli`: the command line, the list of faults and the printed table; read first;
- `harness.drill.runner`: `Drill`, a stack under fault: one ``fault_*`` method per fault, then
  `Drill.finish` measures recovery, rounds missed, readings lost or duplicated and checks the
  invariants (`harness.faults.invariants`);
- `harness.drill.stacks`: the stack under fault: `AttachedStack` (the ``make up`` one, from
  stack.json) or `OwnStack` (private, ``--own-stack``);
- `harness.drill.web_tier`: the real web tier in this process behind a `Recorder` (WSGI) that
  records every aggregate stored, for `OwnStack`.
"""
