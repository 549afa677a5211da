"""Helpers the benchmark scripts share: starting a server, CPU steal of the VM, percentiles."""
import os
import re
import subprocess
import tempfile
import threading


def start_tessera(binary, *args):
    """Starts `binary serve` on a free loopback port with a fresh data dir (no TESSERA_*
    environment), its stderr in <temp dir>/stderr.log; returns (process, port, temp dir).
    Exits the script if it does not start."""
    tmp = tempfile.mkdtemp(prefix="tessera-bench-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    with open(tmp + "/stderr.log", "w") as log:  # the server's log, read when a figure fails
        proc = subprocess.Popen(
            [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", tmp + "/data", *args],
            stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    line = proc.stdout.readline()
    m = re.search(r"tessera listening on \S+:(\d+)$", line.strip())
    if not m:
        proc.kill()
        raise SystemExit("tessera did not start: " + line)
    # Keep reading stdout so that the server never blocks on a full pipe.
    threading.Thread(target=proc.stdout.read, daemon=True).start()
    return proc, int(m.group(1)), tmp


def steal():
    """(steal jiffies, all jiffies) from /proc/stat, to report the hypervisor's share."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[7], sum(v)


def steal_pct(before, after):
    return 100.0 * (after[0] - before[0]) / max(1, after[1] - before[1])


def pct(values, p):
    """The p-th percentile (nearest rank) of `values`."""
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]
