"""The `domainbench` command line: Click commands only, one module per area; cli.main wires them together.

Nothing imports this package: every command is a thin layer over calls a notebook user could make.
"""
