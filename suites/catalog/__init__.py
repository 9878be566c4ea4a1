"""The case catalog, on the ground floor: the declarative cases, their inputs, a run's selection."""
