"""The engines: every way domainbench runs a model, behind one Protocol and one registry (engines/base.py).

The only room that knows devices, dtypes, padding and batching.
"""
