"""The ``jeisson`` command's subcommands over the aggregator's API (filled in below)."""

import argparse


def add_commands(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``status``, ``homes``, ``events``, ``why`` and ``export`` to the ``jeisson`` command."""
