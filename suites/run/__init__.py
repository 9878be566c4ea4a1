"""The run machinery: one worker process per backend, ``run.json``'s facts, one writer per run.

It stands above the suites it drives (the worker plans ``accuracy``, ``timing`` and ``hunt``
tasks and writes their rows through the store) and below the command line that starts it.
"""
