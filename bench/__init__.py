"""Reproducible speed and memory benchmark of the LSeg MindSpore port (issue 7).

``python -m bench`` runs every case variant in a fresh subprocess (``python -m bench.case NAME``), collects the
timings, peak RSS and environment facts into one JSON file and prints a table. See ``bench/run.py`` for the
command line and ``bench/cases.py`` for what each case measures.
"""
