"""Hosts: one small module per way of loading a binary (native, wasmtime, node, chromium)."""
