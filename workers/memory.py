"""This model process's memory: what it reports in each Pong, and the share
of the machine it may take.

The gateway decides each model's share when it admits the load (the budget
minus what the other models reserve) and the supervisor hands it to the
process as ``MLX_GATEWAY_MEMORY_LIMIT``. On Apple silicon that becomes MLX's
memory limit and wired limit, so one model cannot grow into the others'
memory; on the CPU (Linux) MLX allocates with malloc and has no such limits,
so nothing is set.
"""

from __future__ import annotations

import os
import resource
import sys

import structlog

LIMIT_ENV = "MLX_GATEWAY_MEMORY_LIMIT"

log = structlog.get_logger()


def rss_bytes() -> int:
    """The resident set size now (Linux); elsewhere the peak, which is all
    the standard library can tell."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # macOS: bytes, else KiB


def mlx_bytes() -> tuple[int, int]:
    """MLX's allocator: (active, peak) bytes; (0, 0) if MLX is not loaded."""
    mx = sys.modules.get("mlx.core")
    if mx is None:
        return 0, 0
    try:
        return int(mx.get_active_memory()), int(mx.get_peak_memory())
    except (AttributeError, RuntimeError):  # an MLX without these calls
        return 0, 0


def apply_limit_from_environment() -> int | None:
    """Set MLX's memory and wired limits to this process's share, where MLX
    runs on Metal. The share in bytes, or None when none was given or none applies."""
    raw = os.environ.get(LIMIT_ENV, "")
    if not raw.isdigit() or int(raw) <= 0:
        return None
    limit = int(raw)
    import mlx.core as mx

    if not mx.metal.is_available():
        return None  # the CPU backend: no limits to set
    mx.set_memory_limit(limit)
    # The wired limit may not exceed the recommended working set (and needs
    # macOS 15); without it the weights can be paged out, which is slow, not fatal.
    recommended = _device_info(mx).get("max_recommended_working_set_size", limit)
    try:
        mx.set_wired_limit(min(limit, int(recommended)))
    except (RuntimeError, ValueError) as exc:
        log.warning("could not set the MLX wired limit", error=str(exc))
    log.info("memory limit", bytes=limit)
    return limit


def _device_info(mx: object) -> dict[str, int]:
    for owner in (mx, getattr(mx, "metal", None)):
        info = getattr(owner, "device_info", None)
        if info is not None:
            return dict(info())
    return {}


def machine_memory() -> dict[str, int]:
    """Physical memory, and on Apple silicon MLX's recommended working set:
    ``python -m workers.memory`` prints it as JSON for the gateway, which
    never imports MLX itself."""
    found = {"total": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")}
    if sys.platform == "darwin":
        import mlx.core as mx

        if mx.metal.is_available():
            recommended = _device_info(mx).get("max_recommended_working_set_size")
            if recommended:
                found["recommended_working_set"] = int(recommended)
    return found


if __name__ == "__main__":
    import json

    print(json.dumps(machine_memory()))
