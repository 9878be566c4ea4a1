"""Reports and compare: markdown, HTML with plots and CSV from stored rows only; run against run."""
