"""Redis with a password and over TLS (`rediss://`): the options every Redis client gets."""

from __future__ import annotations

import ssl

import redis
from celery import Celery

from api.dispatch import sending_app
from exportq.celery_config import celery_config
from exportq.redis_tls import client_options
from exportq.settings import Settings

TLS_URL = "rediss://:s3cret@redis.example:6380/2"


def test_plain_redis_gets_no_tls_options() -> None:
    settings = Settings(broker_url="redis://:s3cret@127.0.0.1:6379/0")
    conf = celery_config(settings)
    assert "broker_use_ssl" not in conf and "redis_backend_use_ssl" not in conf
    assert client_options(settings, settings.broker_url) == {}


def test_rediss_broker_and_backend_get_certificate_checks() -> None:
    settings = Settings(broker_url=TLS_URL, redis_ssl_ca_certs="/etc/ssl/team-ca.pem")
    conf = celery_config(settings)
    expected = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/etc/ssl/team-ca.pem"}
    assert conf["broker_use_ssl"] == expected
    assert conf["redis_backend_use_ssl"] == expected  # the backend defaults to the broker
    assert conf["broker_url"] == TLS_URL  # the password stays in the URL


def test_only_the_backend_on_tls() -> None:
    settings = Settings(result_backend_url="rediss://backend:6380/0", redis_ssl_cert_reqs="none")
    conf = celery_config(settings)
    assert "broker_use_ssl" not in conf
    assert conf["redis_backend_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_NONE}


def test_celery_and_redis_py_accept_the_tls_configuration() -> None:
    settings = Settings(broker_url=TLS_URL)
    app = Celery("tls-test", set_as_current=False)
    app.conf.update(celery_config(settings))
    try:
        # Celery refuses a rediss:// result backend without ssl options ("A rediss:// URL
        # must have parameter ssl_cert_reqs"); building it connects to nothing.
        assert app.backend.connparams["ssl_cert_reqs"] == ssl.CERT_REQUIRED
        with app.connection_for_write() as connection:
            assert connection.ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    finally:
        app.close()
    sending = sending_app(settings)  # the API's app: the same broker options
    assert sending.conf.broker_use_ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    sending.close()
    client = redis.Redis.from_url(TLS_URL, **client_options(settings, TLS_URL))
    kwargs = client.connection_pool.connection_kwargs
    assert client.connection_pool.connection_class is redis.SSLConnection
    assert (kwargs["password"], kwargs["ssl_cert_reqs"]) == ("s3cret", ssl.CERT_REQUIRED)
    client.close()
