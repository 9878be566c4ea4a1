"""The machinery around the reference and the adapters, one room (subpackage) per concern.

The rooms stand on floors, written down as data in ``tests/test_structure.py`` (``FLOORS``): a
room imports only rooms on lower floors, from the case catalog and the judge at the bottom to
the command line on top, and no module imports itself back through a cycle.
"""
