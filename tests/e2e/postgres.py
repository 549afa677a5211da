"""A throwaway PostgreSQL for the end-to-end suite (E2E_BACKEND=postgres): initdb in a temp dir
(about a second), a unix socket in that dir and no TCP port, removed when the test process
exits. As root it runs as the `postgres` user, as ../shared/notes/platform.md describes; the
machine's own cluster is never touched.

With E2E_BACKEND=postgres every server the harness starts stores its state in PostgreSQL: one
database per data dir (so a restart on the same data dir finds its data again, as with
RocksDB), created on first use."""
import atexit
import glob
import hashlib
import os
import shutil
import subprocess
import tempfile

BACKEND = os.environ.get("E2E_BACKEND", "rocksdb")
if BACKEND not in ("rocksdb", "postgres"):
    raise RuntimeError(f"E2E_BACKEND must be rocksdb or postgres, not {BACKEND!r}")


def _bin_dir():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise RuntimeError("PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb): "
                           "run the README's test command, which installs it")
    return os.path.dirname(found[-1])


class ThrowawayPostgres:
    def __init__(self):
        self.bin = _bin_dir()
        self.dir = tempfile.mkdtemp(prefix="tessera-e2e-pg-")
        self.as_postgres = os.geteuid() == 0
        if self.as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", f"{self.dir}/data", "-U", "postgres", "-A", "trust",
                  "--no-sync", "-E", "UTF8")
        self.databases = set()
        self.start()
        atexit.register(self.remove)

    def _run(self, tool, *args, check=True):
        cmd = [f"{self.bin}/{tool}", *args]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise RuntimeError(f"{tool} failed: {result.stdout}{result.stderr}")
        return result

    def start(self):
        self._run("pg_ctl", "-D", f"{self.dir}/data", "-l", f"{self.dir}/log", "-w", "-o",
                  f"-k {self.dir} -p 5432 -c listen_addresses='' -c max_connections=400",
                  "start")

    def stop(self):
        self._run("pg_ctl", "-D", f"{self.dir}/data", "-m", "fast", "-w", "stop")

    def remove(self):
        self._run("pg_ctl", "-D", f"{self.dir}/data", "-m", "immediate", "-w", "stop",
                  check=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, database="postgres"):
        return f"host={self.dir} port=5432 user=postgres dbname={database}"

    def psql(self, sql, database="postgres"):
        return self._run("psql", self.url(database), "-v", "ON_ERROR_STOP=1", "-qAt", "-c",
                         sql).stdout

    def database_for(self, data_dir):
        """The database standing for `data_dir` (created empty on first use)."""
        name = "e2e_" + hashlib.sha1(str(os.path.abspath(data_dir)).encode()).hexdigest()[:16]
        if name not in self.databases:
            self.psql(f"CREATE DATABASE {name}")
            self.databases.add(name)
        return self.url(name)


_server = None


def shared():
    """The test process's PostgreSQL, started on first use."""
    global _server
    if _server is None:
        _server = ThrowawayPostgres()
    return _server
