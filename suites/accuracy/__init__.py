"""The accuracy suite: catalog cases and the user's own arrays judged against the exact value.

Two ways in, one judging: ``suite`` plans a run's tasks (catalog case -> stored row), ``check``
runs ``xentbench check``'s arrays through every matching implementation (-> records). Both
call each implementation through ``judge.call.judge``, so they sit together, beside ``timing``
and ``hunt``, above the catalog, the judge and the store. Reading and refusing the user's files
is the command line's (``cli.check_inputs``, ``cli.check_linear_inputs``).
"""
