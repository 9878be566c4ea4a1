"""The results store: the rows' schema, their files in a run directory, ``run.json``, safe paths.

``schema`` (the tidy schema per suite, its version and history, the evaluation keys), ``rows``
(one writer and one reader of a run's parquet files), ``run_json`` (``run.json`` read and
merged under a lock), ``safe_paths`` (never through a symlink; atomic writes). A room of its own
just above the catalog and the judge: the suites that write rows and the run machinery, the
findings and the reports that read them all stand on it, and it imports none of them.
"""
