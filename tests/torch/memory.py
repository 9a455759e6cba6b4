"""The exact allocator peak of a PyTorch step, for the tests that check memory."""

from __future__ import annotations

from torch.profiler import ProfilerActivity, profile


def peak_allocated_bytes(step) -> int:
    """Peak bytes the CPU allocator holds during ``step()`` beyond what existed before,
    replayed from ``torch.profiler``'s allocation records."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        step()
    current = peak = 0
    events = [e for e in profiler.profiler.kineto_results.events() if e.name() == "[memory]"]
    for event in sorted(events, key=lambda e: e.start_ns()):
        current += event.nbytes()
        peak = max(peak, current)
    return peak


def allocation_sizes(step) -> list[int]:
    """The size in bytes of every allocation the CPU allocator makes during ``step()``,
    in order (from the same records)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        step()
    events = [e for e in profiler.profiler.kineto_results.events() if e.name() == "[memory]"]
    return [e.nbytes() for e in sorted(events, key=lambda e: e.start_ns()) if e.nbytes() > 0]
