"""CLI command groups, one module per area; harness.cli wires them together."""
