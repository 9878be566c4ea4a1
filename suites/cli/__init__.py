"""The command line, the top room: the ``xentbench`` parser, entry point and commands.

Everything a command needs to talk to the user lives here and nowhere below: ``parser`` (the
argument parser, one builder per command), ``main`` (dispatch; errors as one line and an exit
status), ``usage`` (``UsageError``, bad usage: exit 2), ``params`` (what a command is asked to
do, checked before any work starts), the commands that need more than a few lines
(``run_command``, ``check_command`` with ``check_inputs`` and ``check_linear_inputs``,
``hunt_command``, ``versions_command`` and ``matrix_command`` across releases) and
``listing`` (what ``list`` prints). No room below imports this one: a lower room raises its
own error (or ``ValueError``), and the command turns it into one line.
"""

from xentbench.suites.cli.main import main

__all__ = ["main"]
