"""`domainbench serve`."""

COMMANDS: list = []
