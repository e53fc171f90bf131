"""Data, loss, metrics, evaluation and the training engine for LSeg on MindSpore (see docs/ARCHITECTURE.md).

Submodules are imported by their users; this package file imports nothing, so reading a label list or checking a
data folder does not load MindSpore.
"""
