"""`domainbench deploy`."""

COMMANDS: list = []
