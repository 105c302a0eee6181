"""How much memory this process may still use: for the decoder's memory guard."""
from __future__ import annotations


def available_memory() -> int | None:
    """Bytes this process may still allocate: the least of the system's available memory,
    its control group's headroom and its address-space limit (None if unknown)."""
    import resource

    limits = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    limits += _cgroup_headroom()
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        limits.append(max(0, soft - _vm_size()))
    return min(limits) if limits else None


def _cgroup_headroom() -> list[int]:
    out = []
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2
            pairs = [(f"/sys/fs/cgroup{path}/memory.max", f"/sys/fs/cgroup{path}/memory.current")]
        elif "memory" in controllers.split(","):  # v1
            base = f"/sys/fs/cgroup/memory{path}"
            pairs = [(f"{base}/memory.limit_in_bytes", f"{base}/memory.usage_in_bytes")]
        else:
            continue
        for limit_file, usage_file in pairs:
            try:
                with open(limit_file) as f:
                    limit = f.read().strip()
                with open(usage_file) as f:
                    usage = int(f.read().strip())
            except (OSError, ValueError):
                continue
            if limit.isdigit() and int(limit) < 1 << 60:
                out.append(max(0, int(limit) - usage))
    return out


def _vm_size() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
