"""Judging (ground floor): one call's result against the exact value (ULPs, budget, verdict)."""
