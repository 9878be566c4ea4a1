"""Findings: failing evaluations grouped into root causes, classified, and reproduced."""
