"""Helpers the benchmark scripts share: CPU steal of the VM, percentiles."""


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
