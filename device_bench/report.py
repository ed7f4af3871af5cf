"""The latest figures per artifact, runtime and threads as one Markdown table."""

from __future__ import annotations

from .records import BenchRecord


def _latest(records: list[BenchRecord]) -> dict[tuple, dict[str, BenchRecord]]:
    """(name, form, runtime, threads, device) -> metric -> its latest record.

    The form is part of the key: PyTorch's frame and stream forms share one weights file.
    """
    rows: dict[tuple, dict[str, BenchRecord]] = {}
    for record in sorted(records, key=lambda r: r.timestamp):
        key = (record.name, record.form, record.runtime, record.threads, record.device)
        rows.setdefault(key, {})[record.metric] = record
    return rows


def _fmt(record: BenchRecord | None, spec: str) -> str:
    return "-" if record is None else format(record.value, spec)


def markdown(records: list[BenchRecord]) -> str:
    """target, precision, variant, form, size, Dice vs PyTorch, median, p90, FPS, speed-up."""
    rows = _latest(records)
    eager = {
        (r["median_latency"].variant, r["median_latency"].form, key[3], key[4]): r[
            "median_latency"
        ].value
        for key, r in rows.items()
        if "median_latency" in r and r["median_latency"].target == "torch"
    }
    lines = [
        "| target | runtime | precision | variant | form | threads | size (MB) "
        "| mask Dice vs PyTorch | median (ms) | p90 (ms) | FPS | speed-up vs PyTorch "
        "| GFLOP/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, metrics in sorted(rows.items(), key=lambda kv: kv[0][:3]):
        first = next(iter(metrics.values()))
        median = metrics.get("median_latency")
        base = eager.get((first.variant, first.form, key[3], key[4]))  # same threads, device
        speedup = "-" if median is None or base is None else f"{base / median.value:.2f} x"
        lines.append(
            f"| {first.target} | {first.runtime} | {first.precision} | {first.variant} "
            f"| {first.form} | {first.threads or 'default'} "
            f"| {_fmt(metrics.get('artifact_size'), '.2f')} "
            f"| {_fmt(metrics.get('mask_dice_vs_pytorch'), '.5f')} "
            f"| {_fmt(median, '.2f')} | {_fmt(metrics.get('p90_latency'), '.2f')} "
            f"| {_fmt(metrics.get('fps'), '.1f')} | {speedup} "
            f"| {_fmt(metrics.get('achieved_gflops'), '.1f')} |"
        )
    return "\n".join(lines)
