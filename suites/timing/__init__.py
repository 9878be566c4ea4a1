"""The timing suite: the harness, what the process got while timed, and timing tasks -> rows."""
