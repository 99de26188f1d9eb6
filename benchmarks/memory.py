"""Memory readings the benchmarks share: a process's own figures from /proc/self/status."""

from __future__ import annotations

__all__ = ["proc_status_bytes"]


def proc_status_bytes(field: str) -> int:
    """A /proc/self/status figure in bytes (VmRSS now, VmHWM the peak since exec)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")
