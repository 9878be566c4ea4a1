"""The hunt: search for the inputs that break an implementation, with the exact reference as
oracle (``candidates`` the searched objects, ``seeds`` the structured starting rows, ``mutate``
the moves, ``oracle`` batched exact values and per-row scores, ``search`` the loop and tasks)."""
