"""The run directory: its one owner.

A run directory holds ``results.csv`` (one :class:`~harness.rundir.rows.Row` per line) and
``run.json`` (provenance and status). Every writer and reader goes through this package:

- :mod:`~harness.rundir.rows`: ``Row``, the CSV columns, statuses, the text encoding of a row;
- :mod:`~harness.rundir.meta`: ``run.json`` (``SCHEMA_VERSION``, atomic writes, migrations of
  older layouts, the gate's typed ``RunMeta``);
- :mod:`~harness.rundir.writer`: ``RowWriter``, whole rows only, durable per write;
- :mod:`~harness.rundir.verdict`: the ONE cell-verdict rule;
- :mod:`~harness.rundir.reader`: the ONE reader, strict (gate) or lenient (report).
"""
