"""storage.backend = "postgres": what only a shared, networked store can go through (an
unreachable server, an outage while serving, a schema from a newer tessera), on a throwaway
PostgreSQL the suite starts itself (postgres.py). The suites of storage semantics run on
PostgreSQL as a whole too (scripts/dev.sh, E2E_BACKEND=postgres)."""
import threading
import time

import postgres
from harness import run_tessera, wait_until
from test_durability import assert_every_ack_survived, interrupt_a_write_load


def on_postgres(database_url):
    return ("--set", "storage.backend=postgres", "--set", f"storage.postgres_url={database_url}")


def fresh_database(tmp_path, name="db"):
    return postgres.shared().database_for(tmp_path / name)


def test_an_unreachable_postgres_stops_the_start_naming_the_url_without_its_password(tmp_path):
    url = "postgresql://tessera:hunter2-secret@127.0.0.1:1/tessera?connect_timeout=3"
    res = run_tessera("serve", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "d"),
                      *on_postgres(url), timeout=30)
    assert res.returncode != 0
    assert "postgresql://tessera:***@127.0.0.1:1/tessera" in res.stderr, res.stderr
    assert "hunter2-secret" not in res.stderr + res.stdout


def test_the_password_shows_nowhere_while_serving(server, tmp_path):
    pg = postgres.shared()
    pg.psql("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'keeper') THEN "
            "CREATE ROLE keeper LOGIN PASSWORD 'keeper-pw-9137' SUPERUSER; END IF; END $$")
    url = fresh_database(tmp_path).replace("user=postgres", "user=keeper password=keeper-pw-9137")
    srv = server(*on_postgres(url))
    assert srv.request("POST", "/api/storages", {"id": "s", "data": {"a": 1}}).status == 201
    seen = [srv.request("GET", path).raw.decode("utf-8", "replace")
            for path in ("/metrics", "/api/storages", "/readyz", "/healthz")]
    srv.stop()
    assert all("keeper-pw-9137" not in text for text in seen + [srv.stderr(), srv.stdout()])
    assert "password=***" in srv.stderr()  # the start-up line names the store, masked


def test_a_schema_newer_than_the_server_knows_is_refused_with_a_message(server, tmp_path):
    url = fresh_database(tmp_path)
    srv = server(*on_postgres(url))
    srv.stop()
    postgres.shared().psql("UPDATE tessera_schema SET version = 99", database=url.split("=")[-1])
    res = run_tessera("serve", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "d"),
                      *on_postgres(url))
    assert res.returncode != 0
    assert "schema version 99" in res.stderr, res.stderr
    assert "newer than this server knows" in res.stderr


def test_every_acknowledged_write_of_8_writers_survives_kill_9(server, tmp_path):
    srv = server(*on_postgres(fresh_database(tmp_path)))
    load = interrupt_a_write_load(srv, 600, srv.kill9, threads=8)
    assert srv.proc.returncode == -9
    assert not load.errors, load.errors[:3]
    assert_every_ack_survived(srv, load)


def test_postgres_stopped_under_load_then_back_serves_again_and_keeps_every_ack(server, tmp_path):
    srv = server(*on_postgres(fresh_database(tmp_path)))
    writers = 4
    for w in range(writers):
        assert srv.request("POST", "/api/storages", {"id": f"w{w}", "data": {"n": 0}}).status == 201
    acked = [0] * writers  # the highest n acknowledged per writer
    tried = [0] * writers
    answers = []  # (status, content type) of every failure
    stop = threading.Event()

    def write(w):
        client = srv.client(timeout=30)
        n = 0
        while not stop.is_set():
            n += 1
            tried[w] = n
            res = client.request("PATCH", f"/api/storages/w{w}", {"data": {"n": n}})
            if res.status == 200:
                acked[w] = n
            else:
                answers.append((res.status, res.headers.get("Content-Type")))
                time.sleep(0.01)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    pg = postgres.shared()
    try:
        wait_until(lambda: min(acked) >= 20, message="writes acknowledged before the outage")
        pg.stop()
        down_at = sum(acked)
        wait_until(lambda: len(answers) >= 20, message="answers during the outage")
        assert srv.request("GET", "/readyz").status == 503
        during = sum(acked)
        pg.start()
        back = list(acked)
        wait_until(lambda: all(acked[w] > back[w] + 10 for w in range(writers)),
                   timeout=30, message=lambda: f"every writer acknowledged again ({acked})")
        wait_until(lambda: srv.request("GET", "/readyz").status == 200,
                   message="/readyz ready again")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        if not pg_running(pg):
            pg.start()
    assert during - down_at <= writers  # at most the commits in flight when it stopped
    assert all(ctype == "application/problem+json" for _, ctype in answers), answers[:5]
    statuses = [status for status, _ in answers]
    # 503 for a store that cannot be reached; a commit in flight at the stop may answer 500
    # (its outcome unknown), one per writer at most.
    assert set(statuses) <= {503, 500}, set(statuses)
    assert statuses.count(500) <= writers, statuses
    assert srv.metric("tessera_postgres_reconnects_total") >= 1
    srv.restart()
    for w in range(writers):
        n = srv.request("GET", f"/api/storages/w{w}").body["data"]["n"]
        assert acked[w] <= n <= tried[w], (w, acked[w], n, tried[w])


def pg_running(pg):
    import os
    return os.path.exists(f"{pg.dir}/data/postmaster.pid")
