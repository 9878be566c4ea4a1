"""Deliberately flawed and carefully exact implementations, registered as plugin backends.

Each module here holds small adapters that reproduce one bug class seen in real code (16-bit
accumulation, float32 inside a float64 op, a mean over the wrong rows, ...) and careful ones
(extended precision, rounded once) that every verdict rule must pass. A module lists its
backends in ``ENTRY_POINTS = {"backend-name": "flawed.<module>:<AdapterClass>"}``; the tests
register them through the ``xentbench.adapters`` entry-point group (``tests/plugin_helpers.py``)
exactly as a third-party package would, then run the public commands against them.
"""
