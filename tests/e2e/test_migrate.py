"""`tessera migrate`: the origin app's data directory (built here in its layout, from the demo
bundles the origin shipped) comes into tessera, on RocksDB and on PostgreSQL, and its panels
answer actions; a store copies to another with equal counts and checksums."""
import json
import shutil
import threading
from pathlib import Path

import postgres
from harness import REPO, run_tessera, wait_until

DEMO = REPO / "web" / "demo"


def origin_data_dir(root):
    """The origin app's data/ directory: storages/<id>.json holding a storage's data,
    panels/<id>/{metadata.json,template.html,handler.py}, tasks/<id>/{metadata.json,handler.py}."""
    root.mkdir(parents=True)
    (root / "storages").mkdir()
    (root / "storages" / "todos.json").write_text(json.dumps(
        {"items": [{"id": 1, "text": "bring milk", "done": False}], "next_id": 2}))
    for panel in ("todo", "weather"):
        meta = json.loads((DEMO / panel / "metadata.json").read_text())
        meta.pop("storages", None)
        dest = root / "panels" / meta["id"]
        dest.mkdir(parents=True)
        (dest / "metadata.json").write_text(json.dumps(meta))
        shutil.copy(DEMO / panel / "template.html", dest / "template.html")
        shutil.copy(DEMO / panel / "handler.py", dest / "handler.py")
    (root / "storages" / "weather.json").write_text(json.dumps({"city": "Taipei"}))
    task = json.loads((DEMO / "tasks" / "weather-refresh.json").read_text())
    dest = root / "tasks" / task["id"]
    dest.mkdir(parents=True)
    (dest / "metadata.json").write_text(json.dumps(task))
    shutil.copy(DEMO / "tasks" / "weather-refresh.py", dest / "handler.py")
    return root


def migrate(*args):
    res = run_tessera("migrate", *args, timeout=60)
    return res


def summary(stdout):
    """{kind: (source count, target count, verdict)} from migrate's table."""
    rows = {}
    for line in stdout.splitlines()[2:]:
        kind, source, target, verdict = line.split(None, 3)
        rows[kind] = (int(source), int(target), verdict)
    return rows


def the_todo_panel_answers_actions(srv):
    res = srv.request("POST", "/api/panels/todo-v2-demo/action",
                      {"action": "add", "payload": {"text": "from the origin"}})
    assert res.status == 200, res
    items = srv.request("GET", "/api/storages/todos").body["data"]["items"]
    assert [i["text"] for i in items] == ["bring milk", "from the origin"]
    assert "from the origin" in res.body["html"]


def test_the_origin_apps_data_dir_comes_into_rocksdb_and_its_panels_answer_actions(server,
                                                                                 tmp_path):
    origin = origin_data_dir(tmp_path / "origin")
    data = tmp_path / "data"
    res = migrate("--from", f"files:{origin}", "--to", f"rocksdb:{data}")
    assert res.returncode == 0, res.stderr
    rows = summary(res.stdout)
    assert rows["storages"][:2] == (2, 2) and rows["storages"][2].startswith("equal")
    assert rows["panels"][:2] == (2, 2) and rows["panels"][2].startswith("equal")
    assert rows["tasks"][:2] == (1, 1) and rows["tasks"][2].startswith("equal")
    srv = server("--set", "panels.demos=true", data_dir=data)  # demos must not be added
    panels = [p["id"] for p in srv.request("GET", "/api/panels").body["panels"]]
    assert panels == ["todo-v2-demo", "weather"]
    tasks = srv.request("GET", "/api/tasks").body["tasks"]
    assert [t["id"] for t in tasks] == ["weather-refresh"]
    the_todo_panel_answers_actions(srv)


def test_the_origin_apps_data_dir_comes_into_postgres_and_back_to_files_unchanged(server,
                                                                                tmp_path):
    origin = origin_data_dir(tmp_path / "origin")
    url = postgres.shared().database_for(tmp_path / "pg")
    res = migrate("--from", f"files:{origin}", "--to", f"postgres:{url}")
    assert res.returncode == 0, res.stderr
    first = summary(res.stdout)
    res = migrate("--from", f"postgres:{url}", "--to", f"files:{tmp_path / 'back'}")
    assert res.returncode == 0, res.stderr
    back = summary(res.stdout)
    for kind in ("storages", "panels", "tasks"):
        assert back[kind][2] == first[kind][2], (kind, first[kind], back[kind])
    srv = server("--set", "storage.backend=postgres", "--set", f"storage.postgres_url={url}")
    the_todo_panel_answers_actions(srv)


def test_a_store_that_is_not_empty_is_refused_and_a_bad_file_makes_the_run_incomplete(tmp_path):
    origin = origin_data_dir(tmp_path / "origin")
    data = tmp_path / "data"
    assert migrate("--from", f"files:{origin}", "--to", f"rocksdb:{data}").returncode == 0
    again = migrate("--from", f"files:{origin}", "--to", f"rocksdb:{data}")
    assert again.returncode == 1
    assert "is not empty (--force writes over it)" in again.stderr
    (origin / "storages" / "broken.json").write_text("{oops")
    forced = migrate("--from", f"files:{origin}", "--to", f"rocksdb:{data}", "--force")
    assert forced.returncode == 3, forced.stderr
    assert "broken.json: is not valid JSON" in forced.stderr
    assert summary(forced.stdout)["panels"][:2] == (2, 2)


def test_a_postgres_in_use_is_copied_as_of_one_moment_while_a_writer_goes_on(server, tmp_path):
    # 12,000 storages: the copy reads them in three pages. A writer sets the first storage's
    # n, then the last one's, to 1, 2, 3, ... A copy of one moment has first.n == last.n or
    # last.n + 1; pages read at different moments would hold a last.n beyond first.n.
    origin = tmp_path / "origin"
    (origin / "storages").mkdir(parents=True)
    ids = [f"s{i:05}" for i in range(12000)]
    for id in ids:
        (origin / "storages" / f"{id}.json").write_text('{"n": 0}')
    url = postgres.shared().database_for(tmp_path / "pg")
    assert migrate("--from", f"files:{origin}", "--to", f"postgres:{url}").returncode == 0
    srv = server("--set", "panels.demos=false", "--set", "storage.backend=postgres",
                 "--set", f"storage.postgres_url={url}")
    first, last = ids[0], ids[-1]
    stop = threading.Event()
    written, failures = [], []

    def writer():
        client = srv.client()
        n = 0
        while not stop.is_set() and not failures:
            n += 1
            for id in (first, last):
                res = client.request("PATCH", f"/api/storages/{id}", {"data": {"n": n}})
                if res.status != 200:
                    failures.append(res)
            written.append(n)
        client.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        wait_until(lambda: len(written) >= 20, message="the writer to be under way")
        res = migrate("--from", f"postgres:{url}", "--to", f"rocksdb:{tmp_path / 'copy'}")
        at_end = len(written)
    finally:
        stop.set()
        thread.join()
    assert not failures, failures
    assert res.returncode == 0, res.stderr
    rows = summary(res.stdout)
    assert rows["storages"][:2] == (12000, 12000) and rows["storages"][2].startswith("equal")
    copy = server("--set", "panels.demos=false", data_dir=tmp_path / "copy")
    got = {id: copy.request("GET", f"/api/storages/{id}").body["data"]["n"] for id in (first, last)}
    assert got[first] in (got[last], got[last] + 1), got
    assert 20 <= got[last] <= at_end + 1, (got, at_end)
