"""The hunt: a search for the inputs that break an implementation, the exact reference as oracle.

``candidates`` (the searched objects), ``seeds`` (the structured starting rows), ``mutate`` (the
moves), ``oracle`` (batched exact values and per-row scores), ``search`` (the loop), ``options``
(the options family's batches), ``task`` and ``options_task`` (the worker's hunt tasks and their
rows), ``hunted`` (where a hunted input's files live, which reproducers read too). The hunt
stands beside the other suites, above the catalog, the judge and the store; ``xentbench hunt``
itself (``cli.hunt_command``) drives it through the run machinery.
"""

# Seconds of search per target, set so that the default hunt (every backend, four dtypes, eager,
# value and grad) takes at most ~8 minutes of wall time on an idle 2-core machine. Arithmetic,
# from CPU times (load-independent; measured with budget 1 s at load average ~8, ``nox -s hunt
# -- --budget-s 1``, each row's ``cpu: search …, final judging …`` note, ``resource.getrusage``
# of each backend's worker start):
#
# - targets: 308 plain + 67 options = 375 (JAX 80, TensorFlow 136, torch 80, NumPy 60, ONNX
#   Runtime 19; the linear op is not hunted);
# - fixed CPU: worker starts (imports, adapter, catalog) 2.4 + 4.8 + 11.0 + 3.9 + 2.1 = 24 s;
#   final judging of the kept inputs 34 s (JAX 30 s: each kept input alone is a new shape to
#   compile); JAX's first calls at new shapes (compilation), beyond the budget, ~40 s (its
#   search CPU exceeded the other backends' per target by that much in all);
# - so, wall on two workers = (375 B + 24 + 34 + 40) / 2 = 187.5 B + 49 s; B = 2 s gives
#   424 s = 7.1 min (B = 2.3 s would reach 8 min). The JAX worker alone, 80 B + 74 s = 234 s,
#   is under half of it, so the two workers stay balanced (JAX and TensorFlow start first).
#
# Measured on that loaded machine: the whole ``nox -s hunt -- --budget-s 1`` took 851 s of
# worker wall time (425 s on two workers) at ~40% of a core per worker.
DEFAULT_BUDGET_S = 2.0
