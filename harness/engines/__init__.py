"""In-process engines: :class:`~harness.hosts.base.Instance` implementations without a worker.

``ctypes_engine`` loads the native shared library, ``wasmtime_engine`` the wasm32/wasm64
modules. They hold no module-level state, so a worker process (``harness.hosts.worker``) can
wrap either one for crash and hang isolation.
"""
