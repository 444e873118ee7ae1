"""Tiny random models and small datasets that tests, demos and benchmarks build (no downloads)."""
