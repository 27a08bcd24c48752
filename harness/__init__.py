"""domainbench harness: the CLI, model sources, run specs, the runner and the engine."""

__version__ = "0.1.0"
