"""An internal service's app as `runtime.service.internal_api` builds it: `/readyz` names what it
checks and which of them fail, and shutdown closes what the app holds in order, the database
last."""

from __future__ import annotations

from fastapi.testclient import TestClient

from runtime.db import Database
from runtime.service import internal_api
from runtime.settings import ServiceSettings

LOCAL = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/postgres", "db_role": "postgres"}


def test_readyz_checks_postgres_rabbitmq_and_redis():
    settings = ServiceSettings(**LOCAL)
    with TestClient(internal_api(settings, Database(settings))) as client:
        r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready", "service": "service",
                        "checks": ["postgres", "rabbitmq", "redis"]}


def test_readyz_names_the_dependency_that_is_away():
    settings = ServiceSettings(**LOCAL, RABBITMQ_URL="amqp://guest:guest@127.0.0.1:1/")
    with TestClient(internal_api(settings, Database(settings))) as client:
        r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["code"] == "SERVICE_UNAVAILABLE"
    assert set(r.json()["details"]["failing"]) == {"rabbitmq"}


def test_a_service_may_check_less_than_the_default():
    settings = ServiceSettings(**LOCAL, REDIS_URL="redis://127.0.0.1:1/0")
    db = Database(settings)
    with TestClient(internal_api(settings, db, readiness={"postgres": db.ping})) as client:
        r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["checks"] == ["postgres"]


def test_shutdown_closes_what_the_app_holds_in_order_then_the_database():
    settings = ServiceSettings(**LOCAL)
    db = Database(settings)
    closed: list[tuple[str, int]] = []

    def closer(name: str):
        async def close() -> None:  # the database still serves while the others close
            await db.ping()
            closed.append((name, db.engine.pool.checkedin()))
        return close

    app = internal_api(settings, db, on_close=[closer("queue"), closer("backend")])
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200
        assert closed == []
    assert closed == [("queue", 1), ("backend", 1)]
    assert db.engine.pool.checkedin() == 0  # disposed after them
