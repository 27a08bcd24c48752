"""Serving a configuration: the OpenAI-compatible server, its metrics, loadtest and monitor."""
