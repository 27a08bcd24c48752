"""The result schema, report rendering, run comparison and leaderboards."""
