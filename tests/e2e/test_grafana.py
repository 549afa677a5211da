"""docs/grafana/tessera.json against what servers export: it parses as a dashboard whose every
panel has a title and queries, and every metric its PromQL names is one /metrics shows. Several
families show only once they have a series (actions, renders, sandbox calls, task runs, misfires,
skips) or only on one storage backend, so the servers here go through each of those first."""
import json
import re
import time

import postgres
from harness import REPO, wait_until

DASHBOARD = REPO / "docs" / "grafana" / "tessera.json"
METRIC = re.compile(r"(?<![A-Za-z0-9_:])tessera_[A-Za-z0-9_:]*")
TYPE_LINE = re.compile(r"^# TYPE (\S+) (\S+)$", re.MULTILINE)
# The series names a family of each type exports besides its own name (histograms: only these).
SERIES_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}

COUNTER = ("def on_action(action, payload, storage):\n"
           "    storage['c']['n'] = storage['c'].get('n', 0) + 1\n")
EVERY_SECOND = "* * * * * *"
TICK = "def on_schedule(storage):\n    storage['c']['n'] = storage['c'].get('n', 0) + 1\n"


# --- reading the dashboard -------------------------------------------------------------------

def panels(dashboard):
    """Every panel, those inside collapsed rows included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def exprs(dashboard):
    return [target["expr"] for panel in panels(dashboard) for target in panel.get("targets", [])
            if "expr" in target]


def metric_names(expr):
    return set(METRIC.findall(expr))


def exported_families(metrics_text):
    """{family: type} from the `# TYPE` lines of a /metrics response."""
    return dict(TYPE_LINE.findall(metrics_text))


def is_exported(name, exported):
    if name in exported and exported[name] != "histogram":
        return True
    for kind, suffixes in SERIES_SUFFIXES.items():
        for suffix in suffixes:
            if name.endswith(suffix) and exported.get(name[:-len(suffix)]) == kind:
                return True
    return False


def unknown_metrics(dashboard, exported):
    """The metric names the dashboard's queries use that no family in `exported` exports."""
    return sorted({name for expr in exprs(dashboard) for name in metric_names(expr)
                   if not is_exported(name, exported)})


# --- servers that export every family ---------------------------------------------------------

def metrics_text(srv):
    res = srv.request("GET", "/metrics")
    assert res.status == 200, res
    return res.body


def task_runs(srv, id):
    res = srv.request("GET", f"/api/tasks/{id}/runs?limit=100")
    assert res.status == 200, res
    return [r for r in res.body["runs"] if r["status"] != "running"]


def families_of_a_busy_rocksdb_server(server):
    """A server that missed a task's schedule while down, then rendered and acted."""
    srv = server("--set", "storage.backend=rocksdb")
    assert srv.request("POST", "/api/storages", {"id": "c", "data": {}}).status == 201
    res = srv.request("POST", "/api/panels", {"id": "p", "storage_ids": ["c"],
                                              "template": "n={{ c.n }}", "handler": COUNTER})
    assert res.status == 201, res
    res = srv.request("POST", "/api/tasks", {"id": "t", "schedule": EVERY_SECOND, "handler": TICK,
                                             "storage_ids": ["c"], "misfire": "skip"})
    assert res.status == 201, res
    wait_until(lambda: task_runs(srv, "t"), timeout=20, message="a scheduled run")
    srv.stop()
    time.sleep(3)  # the downtime is the point: scheduled seconds pass unrun (a misfire)
    srv.restart()
    wait_until(lambda: any(r["status"] == "skipped" for r in task_runs(srv, "t")), timeout=20,
               message=lambda: f"the misfire's skipped run: {task_runs(srv, 't')}")
    # After the restart: a new process counts from zero.
    assert srv.request("GET", "/api/panels/p/render").status == 200  # before an action caches one
    res = srv.request("POST", "/api/panels/p/action", {"action": "inc"})
    assert res.status == 200, res
    return exported_families(metrics_text(srv))


def families_of_a_postgres_server(server, tmp_path):
    url = postgres.shared().database_for(tmp_path / "pg")
    srv = server("--set", "storage.backend=postgres", "--set", f"storage.postgres_url={url}")
    return exported_families(metrics_text(srv))


# --- the tests -------------------------------------------------------------------------------

def test_the_dashboard_is_a_grafana_dashboard_whose_panels_all_query_tessera_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["uid"] and dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource", variables
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus", variables
    assert "instance" in variables, variables
    graphs = [p for p in panels(dashboard) if p["type"] != "row"]
    assert graphs, "no panels"
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids)), ids
    for panel in graphs:
        assert panel.get("title"), panel
        assert panel.get("targets"), f"panel {panel['title']!r} has no targets"
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        for target in panel["targets"]:
            assert metric_names(target.get("expr", "")), \
                f"panel {panel['title']!r}: {target.get('expr')!r} names no tessera_ metric"


def test_every_metric_the_dashboard_queries_is_exported(server, tmp_path):
    dashboard = json.loads(DASHBOARD.read_text())
    exported = families_of_a_busy_rocksdb_server(server)
    exported.update(families_of_a_postgres_server(server, tmp_path))
    assert unknown_metrics(dashboard, exported) == []
    # The same check on a copy with one made-up name finds exactly that name.
    bogus = json.loads(DASHBOARD.read_text())
    bogus["panels"][-1]["targets"].append({"expr": "rate(tessera_bogus_total[5m])"})
    assert unknown_metrics(bogus, exported) == ["tessera_bogus_total"]
    variable_queries = json.dumps(dashboard["templating"]["list"])
    assert not [name for name in metric_names(variable_queries)
                if not is_exported(name, exported)], variable_queries


def test_the_check_flags_names_no_server_exports():
    exported = {"tessera_a_total": "counter", "tessera_b_seconds": "histogram",
                "tessera_c": "gauge", "tessera_d_seconds": "summary"}
    dashboard = {"panels": [{"type": "row", "title": "r", "panels": [
        {"title": "x", "targets": [{"expr": 'rate(tessera_a_total[5m])'}]}]},
        {"title": "y", "targets": [
            {"expr": 'histogram_quantile(0.99, sum by (le) (rate(tessera_b_seconds_bucket[5m])))'},
            {"expr": 'tessera_c / tessera_d_seconds_sum * tessera_d_seconds'},
            {"expr": 'rate(tessera_made_up_total[5m]) + tessera_b_seconds'},
            {"expr": 'tessera_c_count + tessera_a_total_sum + tessera_a_bucket'}]}]}
    assert unknown_metrics(dashboard, exported) == [
        "tessera_a_bucket", "tessera_a_total_sum", "tessera_b_seconds", "tessera_c_count",
        "tessera_made_up_total"]
