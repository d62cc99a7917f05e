"""Check kinds a matrix selects: smoke, ops, model, defaults, corpus, bench.

Each check kind is one module with a ``run(ctx)`` that yields :class:`~harness.results.Row`.
:data:`REGISTRY` maps the kind name to it; the runner calls them per cell.
"""
