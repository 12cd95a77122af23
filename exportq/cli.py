"""The `exportq` command. Each group of subcommands lives in its own module under
`exportq/commands/`; this file only assembles them, so `exportq --help` stays fast and
importing the CLI never imports torch."""

from __future__ import annotations

import click

from exportq import __version__
from exportq.commands import api, db, export, reconciler, remote, token, worker


@click.group()
@click.version_option(__version__, prog_name="exportq")
def cli() -> None:
    """exportq: PyTorch -> validated TorchScript, PNNX and ncnn artifacts."""


cli.add_command(export.export)
cli.add_command(db.db)
cli.add_command(token.token)
cli.add_command(worker.worker)
cli.add_command(worker.flower)
cli.add_command(api.api)
cli.add_command(reconciler.reconciler)
for command in remote.COMMANDS:
    cli.add_command(command)


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
