"""The one exception type for user mistakes.

The CLI turns a DomainbenchError into a one-line message and exit code 2; anything else is a bug
and keeps its traceback.
"""


class DomainbenchError(Exception):
    """A problem with the user's input (file, flag, model spec, data), not a bug in domainbench."""
