"""The outbox (db.dispatch), leases and recovery (db.leases), and one reconciler pass, on both
database backends; the broker is a recording fake and Redis a dict."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from api.reconciler import Reconciler, messages_in_broker
from api.relay import publish_pending
from db import dispatch as outbox
from db import leases
from db import repository as repo
from db.models import Dispatch, Job, utcnow
from db.session import unit_of_work
from exportq.errors import ServiceUnavailable
from exportq.settings import Settings
from exportq.spec import JobSpec

Factory = sessionmaker[Session]
SPEC = JobSpec.model_validate(
    {
        "model": {"kind": "callable", "target": "tests.models.zoo:cnn_bn"},
        "inputs": [{"name": "x", "shape": [1, 3, 8, 8]}],
    }
)


@dataclass
class Broker:
    sent: list[str] = field(default_factory=list)
    down: bool = False

    def send_export(self, job_id: str, queue: str, priority: int) -> None:
        if self.down:
            raise ServiceUnavailable(f"broker down; job {job_id} will be dispatched later")
        self.sent.append(job_id)

    def revoke(self, job_id: str) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass
class FakeRedis:
    lists: dict[str, list[str]] = field(default_factory=dict)
    unacked: dict[str, str] = field(default_factory=dict)

    def lrange(self, name: str, start: int, end: int) -> list[str]:
        return self.lists.get(name, [])

    def hvals(self, name: str) -> list[str]:
        return list(self.unacked.values())


def message(job_id: str) -> str:
    return json.dumps({"body": "", "headers": {"id": job_id, "task": "exportq.export"}})


def submit(factory: Factory) -> str:
    with unit_of_work(factory) as s:
        job = repo.create_job(s, SPEC, "alice", "cpu")
        outbox.add_dispatch(s, job)
        return job.id


def claim(factory: Factory, job_id: str, lease_s: float = 60) -> int:
    with unit_of_work(factory) as s:
        token = repo.claim_job(s, job_id, "w1", lease_s=lease_s)
    assert token is not None
    return token


def expire(factory: Factory, job_id: str) -> None:
    with unit_of_work(factory) as s:
        s.execute(
            sa.update(Job)
            .where(Job.id == job_id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )


def job(factory: Factory, job_id: str) -> Job:
    with unit_of_work(factory) as s:
        return repo.get_job(s, job_id)


def dispatches(factory: Factory, job_id: str) -> list[Dispatch]:
    with unit_of_work(factory) as s:
        return outbox.dispatches_of(s, job_id)


def test_a_dispatch_is_published_once_and_kept_while_the_broker_is_down(factory: Factory) -> None:
    broker = Broker(down=True)
    job_id = submit(factory)

    failed = publish_pending(factory, broker)
    assert failed.error is not None and failed.sent == 0
    (row,) = dispatches(factory, job_id)
    assert (
        row.published_at is None and row.attempts == 1 and "broker down" in (row.last_error or "")
    )

    broker.down = False
    assert publish_pending(factory, broker).sent == 1
    assert publish_pending(factory, broker).sent == 0  # published rows are not sent again
    assert broker.sent == [job_id]


def test_a_dispatch_of_a_job_no_longer_queued_is_dropped(factory: Factory) -> None:
    broker = Broker()
    job_id = submit(factory)
    with unit_of_work(factory) as s:
        repo.request_cancel(s, job_id)
    published = publish_pending(factory, broker)
    assert (published.sent, published.dropped, broker.sent) == (0, 1, [])


def test_lease_renewal_is_fenced_by_the_claim(factory: Factory) -> None:
    job_id = submit(factory)
    token = claim(factory, job_id)
    with unit_of_work(factory) as s:
        assert leases.extend(s, job_id, token, 60)
        assert not leases.extend(s, job_id, token + 1, 60)


def test_recovery_leaves_a_live_lease_alone_and_requeues_an_expired_one(factory: Factory) -> None:
    job_id = submit(factory)
    token = claim(factory, job_id)
    with unit_of_work(factory) as s:
        assert leases.recover(s, job_id, 3) is leases.Recovery.NONE  # a duplicate: nothing
    expire(factory, job_id)
    with unit_of_work(factory) as s:
        assert leases.recover(s, job_id, 3) is leases.Recovery.REQUEUED
        assert leases.recover(s, job_id, 3) is leases.Recovery.NONE  # recovered once
    assert (job(factory, job_id).status, len(dispatches(factory, job_id))) == ("queued", 2)
    # The lost worker's late writes are fenced off.
    with unit_of_work(factory) as s:
        assert not repo.set_stage(s, job_id, token, "convert")
    assert claim(factory, job_id) == token + 1


def test_the_attempt_cap_ends_the_job_worker_lost_with_its_last_signal(factory: Factory) -> None:
    job_id = submit(factory)
    for attempt in range(1, 4):
        claim(factory, job_id)
        with unit_of_work(factory) as s:
            assert leases.mark_lost(s, job_id, "w1", "SIGSEGV")
            outcome = leases.recover(s, job_id, 3, dispatch=False)
        assert outcome is (leases.Recovery.REQUEUED if attempt < 3 else leases.Recovery.FAILED)
    ended = job(factory, job_id)
    assert (ended.status, ended.error_code, ended.attempts) == ("failed", "worker_lost", 3)
    assert ended.last_signal == "SIGSEGV" and "SIGSEGV" in (ended.error_message or "")


def test_a_lost_job_asked_to_cancel_ends_cancelled(factory: Factory) -> None:
    job_id = submit(factory)
    claim(factory, job_id)
    with unit_of_work(factory) as s:
        repo.request_cancel(s, job_id)
    expire(factory, job_id)
    with unit_of_work(factory) as s:
        assert leases.recover(s, job_id, 3) is leases.Recovery.CANCELLED
    assert job(factory, job_id).status == "cancelled"


def test_reconciler_redispatches_only_messages_redis_lost(factory: Factory, db_url: str) -> None:
    broker, redis = Broker(), FakeRedis()
    settings = Settings(database_url=db_url, redispatch_after_s=0)
    lost, waiting, delivered = submit(factory), submit(factory), submit(factory)
    publish_pending(factory, broker)
    redis.lists["cpu"] = [message(waiting)]
    redis.unacked["1"] = json.dumps([json.loads(message(delivered)), "", "cpu"])
    running = submit(factory)
    claim(factory, running)
    expire(factory, running)

    done = Reconciler(settings, factory, broker, redis).run_once()

    assert done.redispatched == [lost] and done.requeued == [running]
    assert broker.sent[-2:] == [lost, running] or broker.sent[-2:] == [running, lost]
    assert messages_in_broker(redis, ["cpu"]) == {waiting, delivered}
