"""The postgres_server/postgres_url fixtures give a real server: connections, password checks, one database a test."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy

pytestmark = pytest.mark.postgres

_seen_databases: list[str] = []


def test_connects_and_queries(postgres_url):
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        user, owner = conn.execute(
            "select current_user, pg_get_userbyid(datdba) from pg_database where datname = current_database()"
        ).fetchone()
    assert user == owner == "harness"


def test_tcp_uses_scram_password(postgres_server, postgres_url):
    assert postgres_url.startswith(f"postgresql://harness:harness-secret-pw@127.0.0.1:{postgres_server.port}/")
    with psycopg.connect(postgres_url) as conn:
        stored = conn.execute("select current_setting('password_encryption')").fetchone()[0]
    assert stored == "scram-sha-256"


def test_wrong_password_is_refused(postgres_server, postgres_url):
    wrong = postgres_url.replace(f":{postgres_server.password}@", ":not-the-password@")
    with pytest.raises(psycopg.OperationalError, match="authentication failed"):
        psycopg.connect(wrong, connect_timeout=10)


def test_superuser_has_no_tcp_access(postgres_server):
    url = f"postgresql://{postgres_server.superuser}@{postgres_server.host}:{postgres_server.port}/postgres"
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=10)


@pytest.mark.parametrize("round", [1, 2])
def test_each_test_gets_its_own_database(postgres_url, round):
    with psycopg.connect(postgres_url) as conn:
        name = conn.execute("select current_database()").fetchone()[0]
        conn.execute("create table marker (n int)")  # would fail if a database were shared
    assert name not in _seen_databases
    _seen_databases.append(name)


def test_sqlalchemy_plain_url_uses_psycopg3(postgres_url):
    engine = sqlalchemy.create_engine(postgres_url)
    try:
        assert engine.dialect.driver == "psycopg"
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("select 1")).scalar() == 1
    finally:
        engine.dispose()
