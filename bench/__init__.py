"""Gradserve's benchmark suite: engine cases timed against torch and HIPS autograd in one run.

Run it with ``python -m bench`` (``--quick`` for a smoke run under a minute); see bench/README.md.
"""
