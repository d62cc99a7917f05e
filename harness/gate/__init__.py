"""The regression gate: ``compare``, ``history``, ``signoff`` and the gate's calibration.

Each command module exposes ``configure(parser)`` and ``execute(args) -> int``; the statistics,
the history store, change-point detection and the claims model are small modules of their own.
"""
