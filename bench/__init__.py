"""Reproducible speed and memory benchmark of the LSeg MindSpore port.

``python -m bench`` runs every case variant in a fresh subprocess (``python -m bench.case NAME``), collects the
timings, peak RSS and environment facts into one JSON file and prints a table. See ``bench/run.py`` for the
command line, ``bench/cases/`` for what each case measures and ``bench/PERFORMANCE.md`` for the results.
"""
