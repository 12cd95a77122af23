"""`exportq reconciler`: the outbox relay and the reconciler as a process of their own.

Each API process runs them as a thread by default; a deployment that wants one place doing it
(or APIs that scale to zero) sets EXPORTQ_RECONCILER_IN_API=false on the APIs and runs this.
Several reconcilers at once are safe (docs/RELIABILITY.md). SIGTERM or Ctrl-C stops it after
the pass it is in.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import click


@click.command("reconciler")
@click.option("--once", is_flag=True, help="Run one pass, print what it did, and exit.")
def reconciler(once: bool) -> None:
    """Publish the dispatch outbox, re-dispatch lost messages, recover expired leases."""
    try:
        from api.reconciler import Reconciler
        from api.services import build_services
    except ImportError as exc:
        raise click.ClickException(
            f"the reconciler needs the server extra: pip install 'exportq[server]' ({exc})"
        ) from exc
    from exportq.settings import get_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = get_settings()
    services = build_services(settings)
    worker = Reconciler(settings, services.sessions, services.dispatcher, services.redis)
    stopping = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while True:
            try:
                done = worker.run_once()
            except Exception:  # the database is away: the next pass tries again
                logging.getLogger("exportq.reconciler").exception("reconciler pass failed")
            else:
                if once:
                    click.echo(
                        f"requeued {len(done.requeued)}, failed {len(done.failed)}, "
                        f"re-dispatched {len(done.redispatched)}, published {done.published}"
                        + (f"; broker: {done.broker_error}" if done.broker_error else "")
                    )
            if once or stopping.wait(settings.reconcile_interval_s):
                return
    finally:
        services.close()
