"""Task types, metrics, suite loading and the builtin suites."""
