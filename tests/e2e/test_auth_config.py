"""Bearer-token authentication, and where settings come from: file, environment, flags."""
import re
import socket

import pytest

from harness import REPO, assert_problem, run_tessera

TOKEN = "e2e-Secret-7f3a9c21"


@pytest.fixture(params=["flag", "env"])
def secured(server, request):
    if request.param == "flag":
        return server("--api-token", TOKEN)
    return server(env={"TESSERA_SERVER_API_TOKEN": TOKEN})


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer ", "Bearer wrong",
                                           "Bearer " + TOKEN[:-1] + "X", "Bearer " + TOKEN + "x",
                                           "Basic " + TOKEN, TOKEN])
@pytest.mark.parametrize("method,path,body", [
    ("GET", "/api/storages", None), ("POST", "/api/storages", {"id": "x", "data": {}}),
    ("GET", "/api/storages/x", None), ("DELETE", "/api/storages/x", None)])
def test_api_requests_without_the_right_token_get_401_and_change_nothing(
        secured, authorization, method, path, body):
    good = {"Authorization": "Bearer " + TOKEN}
    assert secured.request("POST", "/api/storages", {"id": "x", "data": {"a": 1}}, good).status \
        == 201
    headers = {} if authorization is None else {"Authorization": authorization}
    res = secured.request(method, path, body, headers)
    assert_problem(res, 401, "unauthorized")
    assert res.headers["WWW-Authenticate"] == "Bearer"
    assert TOKEN not in res.raw.decode()
    after = secured.request("GET", "/api/storages/x", None, good)
    assert after.status == 200 and after.body["version"] == 1, after


def test_the_right_token_works_on_every_api_route(secured):
    good = {"Authorization": "Bearer " + TOKEN}
    assert secured.request("POST", "/api/storages", {"id": "x", "data": {}}, good).status == 201
    assert secured.request("GET", "/api/storages", None, good).body["storages"][0]["id"] == "x"
    assert secured.request("PATCH", "/api/storages/x", {"data": {"a": 1}}, good).status == 200
    assert secured.request("PUT", "/api/storages/x", {"data": {"b": 1}}, good).status == 200
    assert secured.request("GET", "/api/storages/x", None, good).body["version"] == 3
    assert secured.request("DELETE", "/api/storages/x", None, good).status == 200


def test_the_bearer_scheme_name_is_case_insensitive(secured):
    # RFC 9110 section 11.1: the authentication scheme is a case-insensitive token.
    res = secured.request("GET", "/api/storages", None, {"Authorization": "bearer " + TOKEN})
    assert res.status == 200, res


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_probes_stay_open_without_a_token(secured, path):
    assert secured.request("GET", path).status == 200


def test_metrics_follow_the_token_unless_metrics_public(server):
    srv = server("--api-token", TOKEN)
    assert_problem(srv.request("GET", "/metrics"), 401, "unauthorized")
    res = srv.request("GET", "/metrics", None, {"Authorization": "Bearer " + TOKEN})
    assert res.status == 200 and b"tessera_http_requests_total" in res.raw, res
    public = server("--api-token", TOKEN, "--set", "server.metrics_public=true")
    assert public.request("GET", "/metrics").status == 200
    assert_problem(public.request("GET", "/api/storages"), 401, "unauthorized")


def test_the_token_never_appears_in_the_server_output(secured):
    secured.request("GET", "/api/storages", None, {"Authorization": "Bearer wrong"})
    secured.request("GET", "/api/storages", None, {"Authorization": "Bearer " + TOKEN})
    secured.request("GET", "/api/nope", None, {"Authorization": "Bearer " + TOKEN})
    assert TOKEN not in secured.request("GET", "/metrics").body
    secured.stop()
    output = secured.stdout() + secured.stderr()
    assert "listening on" in output  # the capture works
    assert TOKEN not in output


# --- non-loopback listen ---------------------------------------------------------------------

def test_listening_on_all_interfaces_without_a_token_is_refused_at_start_up(tmp_path):
    run = run_tessera("serve", "--listen", "0.0.0.0:0", "--data-dir", str(tmp_path / "d"))
    assert run.returncode != 0
    assert "listening on" not in run.stdout
    assert "api_token" in run.stderr and "--insecure" in run.stderr, run.stderr


def test_listening_on_all_interfaces_with_insecure_starts_without_auth(server):
    srv = server("--insecure", listen="0.0.0.0:0")
    assert srv.host == "0.0.0.0"
    assert srv.request("GET", "/healthz").status == 200
    assert srv.request("POST", "/api/storages", {"id": "x"}).status == 201


def test_listening_on_all_interfaces_with_a_token_starts_and_requires_it(server):
    srv = server("--api-token", TOKEN, listen="0.0.0.0:0")
    assert_problem(srv.request("GET", "/api/storages"), 401, "unauthorized")
    res = srv.request("GET", "/api/storages", None, {"Authorization": "Bearer " + TOKEN})
    assert res.status == 200, res


# --- configuration ---------------------------------------------------------------------------

def start_and_fail(tmp_path, *args, env=None):
    run = run_tessera("serve", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "d"),
                      *args, env=env)
    assert run.returncode != 0, run
    assert "listening on" not in run.stdout, run
    return run.stderr


@pytest.mark.parametrize("toml,named", [
    ("[server]\nnope = 1\n", "server.nope"),
    ("[nope]\nx = 1\n", "nope.x"),
    ("[server]\nlisten = \"nope\"\n", "server.listen"),
    ("[server]\nmax_body_bytes = -5\n", "server.max_body_bytes"),
    ("[storage]\nsync = 1.5\n", "storage.sync"),
    ("[server\nlisten = 1\n", "tessera.toml"),
])
def test_a_bad_config_file_stops_start_up_naming_the_key(tmp_path, toml, named):
    path = tmp_path / "tessera.toml"
    path.write_text(toml)
    assert named in start_and_fail(tmp_path, "--config", str(path))


def test_a_missing_config_file_stops_start_up(tmp_path):
    assert "absent.toml" in start_and_fail(tmp_path, "--config", str(tmp_path / "absent.toml"))


@pytest.mark.parametrize("env,named", [
    ({"TESSERA_NOPE": "1"}, "TESSERA_NOPE"),
    ({"TESSERA_SERVER_MAX_BODY_BYTES": "lots"}, "server.max_body_bytes"),
    ({"TESSERA_STORAGE_SYNC": "maybe"}, "storage.sync"),
])
def test_a_bad_environment_variable_stops_start_up_naming_it(tmp_path, env, named):
    assert named in start_and_fail(tmp_path, env=env)


@pytest.mark.parametrize("setting,named", [
    ("server.nope=1", "server.nope"), ("nope=1", "nope"),
    ("server.max_json_depth=0", "server.max_json_depth"),
    ("storage.idle_passivate_ms=soon", "storage.idle_passivate_ms"),
    ("server.max_body_bytes", "server.max_body_bytes"),
])
def test_a_bad_set_stops_start_up_naming_the_key(tmp_path, setting, named):
    assert named in start_and_fail(tmp_path, "--set", setting)


def held_port():
    """A loopback port held (bound, not listening) for the test: nobody can serve on it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


def assert_refused(port):
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_flags_beat_environment_beat_config_file_for_listen(server, tmp_path):
    file_sock, file_port = held_port()
    env_sock, env_port = held_port()
    with file_sock, env_sock:
        config = tmp_path / "tessera.toml"
        config.write_text(f'[server]\nlisten = "127.0.0.1:{file_port}"\n')
        env = {"TESSERA_SERVER_LISTEN": f"127.0.0.1:{env_port}"}
        flag_wins = server("--config", str(config), env=env, listen="127.0.0.1:0")
        env_wins = server("--config", str(config), env={"TESSERA_SERVER_LISTEN": "127.0.0.1:0"},
                          listen=None)
        for srv in (flag_wins, env_wins):
            assert srv.port not in (file_port, env_port)
            assert srv.request("GET", "/healthz").status == 200
        assert_refused(file_port)
        assert_refused(env_port)


def test_a_config_file_value_applies_unless_env_or_flag_override_it(server, tmp_path):
    config = tmp_path / "tessera.toml"
    config.write_text("[server]\nmax_body_bytes = 1000\n")
    env = {"TESSERA_CONFIG": str(config)}  # the file, chosen by environment
    cases = [(server(env=env), 1000),
             (server(env={**env, "TESSERA_SERVER_MAX_BODY_BYTES": "2000"}), 2000),
             (server("--set", "server.max_body_bytes=3000",
                     env={**env, "TESSERA_SERVER_MAX_BODY_BYTES": "2000"}), 3000)]
    for srv, limit in cases:
        for size, status in ((limit, 400), (limit + 1, 413)):  # 400: not JSON, but read
            res = srv.request("POST", "/api/storages", b"x" * size)
            assert res.status == status, (limit, size, res)


def test_the_shipped_config_file_loads_as_is(server):
    srv = server("--config", str(REPO / "config" / "tessera.toml"))
    assert srv.request("GET", "/readyz").body == {"status": "ready"}


def test_version_prints_the_version_and_help_exits_0():
    run = run_tessera("--version")
    assert run.returncode == 0 and re.match(r"^tessera \d+\.\d+\.\d+", run.stdout), run
    run = run_tessera("--help")
    assert run.returncode == 0 and "serve" in run.stdout, run
    run = run_tessera("serve", "--help")
    assert run.returncode == 0, run
    for flag in ("--config", "--listen", "--data-dir", "--api-token", "--insecure", "--set"):
        assert flag in run.stdout, flag


@pytest.mark.parametrize("method,path", [("GET", "/api/nope"), ("GET", "/api"),
                                         ("GET", "/api/storages/a/b"), ("PUT", "/api/storages"),
                                         ("GET", "/ws"), ("GET", "/ws/x")])
def test_without_the_token_unknown_protected_paths_get_401_not_404_or_405(secured, method, path):
    res = secured.request(method, path)
    assert_problem(res, 401, "unauthorized")
    assert res.headers["WWW-Authenticate"] == "Bearer"


def test_an_unknown_empty_section_in_the_config_file_stops_start_up(tmp_path):
    config = tmp_path / "tessera.toml"
    config.write_text("[srever]\n")
    result = run_tessera("serve", "--config", str(config), "--listen", "127.0.0.1:0",
                         "--data-dir", str(tmp_path / "data"))
    assert result.returncode != 0
    assert "srever" in result.stderr


def test_a_host_name_that_merely_starts_with_127_is_not_loopback(tmp_path):
    result = run_tessera("serve", "--listen", "127.evil.example:0",
                         "--data-dir", str(tmp_path / "data"))
    assert result.returncode != 0
    assert "api_token" in result.stderr
