"""Across releases: version environments built by uv, bisection, the version matrix."""
