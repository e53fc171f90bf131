"""Data, loss, metrics and evaluation for LSeg on MindSpore (see docs/ARCHITECTURE.md).

Submodules are imported lazily by their users: ``encoding_custom.labels`` must stay importable
without MindSpore, so this package file imports nothing.
"""
