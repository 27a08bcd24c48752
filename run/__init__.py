"""Comparison runs: run specs, preflight, tuned artifacts, the configuration loader and the runner."""
