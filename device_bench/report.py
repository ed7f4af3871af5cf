"""The latest figures per artifact as a Markdown table, the cells not timed apart, and a chart."""

from __future__ import annotations

from pathlib import Path

from model.atomic import atomic_path

from .peak import Peak, cores_used
from .records import BenchRecord

# target, variant, precision, form, threads, device, batch
Cell = tuple[str, str, str, str, int | None, str, int]


def _cell(record: BenchRecord) -> Cell:
    return (
        record.target,
        record.variant,
        record.precision,
        record.form,
        record.threads,
        record.device,
        record.batch,
    )


def _latest(records: list[BenchRecord]) -> tuple[dict[tuple, dict[str, BenchRecord]], dict]:
    """Timed rows ((cell, runtime) -> metric -> latest record) and the not-timed cells.

    A cell's latest outcome wins: a cell timed after it failed shows as timed, and the other
    way round. The form is in the key: PyTorch's frame and stream forms share a weights file.
    """
    timed: dict[tuple, dict[str, BenchRecord]] = {}
    refused: dict[Cell, BenchRecord] = {}
    for record in sorted(records, key=lambda r: r.timestamp):
        cell = _cell(record)
        if record.metric == "status":
            refused[cell] = record
            for key in [k for k in timed if k[0] == cell]:
                del timed[key]
        else:
            refused.pop(cell, None)
            timed.setdefault((cell, record.runtime), {})[record.metric] = record
    return timed, refused


def _fmt(record: BenchRecord | None, spec: str) -> str:
    return "-" if record is None else format(record.value, spec)


def _pair(first: BenchRecord | None, second: BenchRecord | None) -> str:
    return "-" if first is None or second is None else f"{first.value:.0f} / {second.value:.0f}"


def _order(cell: Cell) -> tuple:
    target, variant, precision, form, threads, device, batch = cell
    return (device, variant, form, batch, target, precision, threads or 0)


SHORT = (
    "target",
    "runtime",
    "precision",
    "variant",
    "form",
    "median (ms)",
    "FPS",
    "speed-up vs PyTorch",
    "mask Dice vs PyTorch",
)


def markdown(records: list[BenchRecord], short: bool = False) -> str:
    """Timed cells (size, Dice vs PyTorch, latency, FPS, speed-up, GFLOP/s, share of the fp32
    peak), then the cells not timed and why, then each machine's peak formula.

    ``short``: only the columns in SHORT, for a summary at the end of a demo.
    """
    timed, refused = _latest(records)
    eager = {  # PyTorch fp32 at the same threads, device and batch
        (cell[1], cell[3], cell[4], cell[5], cell[6]): metrics["median_latency"].value
        for (cell, _), metrics in timed.items()
        if "median_latency" in metrics and cell[0] == "torch" and cell[2] == "fp32"
    }
    rows: list[dict[str, str]] = []
    formulas: dict[str, str] = {}
    for (cell, runtime), metrics in sorted(timed.items(), key=lambda kv: _order(kv[0][0])):
        target, variant, precision, form, threads, device, batch = cell
        first = next(iter(metrics.values()))
        median = metrics.get("median_latency")
        base = eager.get((variant, form, threads, device, batch))
        fraction = metrics.get("fp32_peak_fraction")
        peak = Peak.of(first.machine)
        if peak is not None and fraction is not None:
            cores = cores_used(threads, int(first.machine.get("cores", 0)))
            formulas[f"{device}, {cores} cores"] = peak.formula(cores)
        rows.append(
            {
                "target": target,
                "runtime": runtime,
                "precision": precision,
                "variant": variant,
                "form": form,
                "threads": str(threads or "default"),
                "batch": str(batch),
                "status": first.status,
                "size (MB)": _fmt(metrics.get("artifact_size"), ".2f"),
                "mask Dice vs PyTorch": _fmt(metrics.get("mask_dice_vs_pytorch"), ".5f"),
                "median (ms)": _fmt(median, ".2f"),
                "p90 (ms)": _fmt(metrics.get("p90_latency"), ".2f"),
                "FPS": _fmt(metrics.get("fps"), ".1f"),
                "speed-up vs PyTorch": "-"
                if median is None or base is None
                else f"{base / median.value:.2f} x",
                "GFLOP/s": _fmt(metrics.get("achieved_gflops"), ".1f"),
                "of fp32 peak": "-" if fraction is None else f"{fraction.value:.0%}",
                "float ops": _fmt(metrics.get("float_compute_ops"), ".0f"),
                "Q / DQ": _pair(metrics.get("quantize_ops"), metrics.get("dequantize_ops")),
                "partitions": _fmt(metrics.get("delegate_partitions"), ".0f"),
                "device": device,
            }
        )
    columns = list(SHORT) if short else list(rows[0]) if rows else list(SHORT)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row[c] for c in columns) + " |" for row in rows]
    if refused:
        lines += ["", "Not timed:", "", "| target | precision | variant | form | status | why |"]
        lines.append("|---|---|---|---|---|---|")
        for cell, record in sorted(refused.items(), key=lambda kv: _order(kv[0])):
            why = record.note.replace("|", "/")
            lines.append(
                f"| {cell[0]} | {cell[2]} | {cell[1]} | {cell[3]} | {record.status} | {why} |"
            )
    if formulas and not short:
        lines += [
            "",
            "fp32 peak (cores x FMA lanes x 2 x clock; clock: the kernel's, or the "
            "higher one a one-core sgemm proves):",
            "",
        ]
        lines += [f"- {where}: {formula}" for where, formula in sorted(formulas.items())]
    return "\n".join(lines)


def chart(records: list[BenchRecord], path: Path) -> None:
    """FPS per target and precision, BaS-S beside BaS-L, one panel per form, as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    timed, refused = _latest(records)
    fps: dict[tuple[str, str, str], dict[tuple[str, str], float]] = {}
    missing: dict[tuple[str, str, str], dict[tuple[str, str], str]] = {}

    def panel(cell: Cell) -> tuple[str, str, str]:
        return (cell[5], cell[3], f"{cell[4] or 'default'} threads, batch {cell[6]}")

    for (cell, _runtime), metrics in timed.items():
        if "fps" in metrics:
            fps.setdefault(panel(cell), {})[(f"{cell[0]}\n{cell[2]}", cell[1])] = metrics[
                "fps"
            ].value
    for cell, record in refused.items():  # shown where its bar would be, and why not
        missing.setdefault(panel(cell), {})[(f"{cell[0]}\n{cell[2]}", cell[1])] = record.status
    panels = sorted(set(fps) | set(missing))
    figure = Figure(figsize=(11, 3.6 * max(1, len(panels))), dpi=100)
    FigureCanvasAgg(figure)
    for index, key in enumerate(panels, 1):
        axes = figure.add_subplot(len(panels), 1, index)
        values, absent = fps.get(key, {}), missing.get(key, {})
        groups = sorted({group for group, _ in (*values, *absent)})
        for offset, variant, colour in ((-0.2, "S", "#4c72b0"), (0.2, "L", "#dd8452")):
            heights = [values.get((group, variant), 0.0) for group in groups]
            bars = axes.bar(
                [i + offset for i in range(len(groups))],
                heights,
                0.4,
                label=f"BaS-{variant}",
                color=colour,
            )
            axes.bar_label(bars, labels=[f"{h:.0f}" if h else "" for h in heights], fontsize=7)
            for i, group in enumerate(groups):
                if (group, variant) in absent:
                    axes.text(
                        i + offset, 1, absent[(group, variant)], rotation=90, fontsize=7,
                        ha="center", va="bottom", color="tab:red",
                    )  # fmt: skip
        axes.set_xticks(range(len(groups)), groups, fontsize=8)
        axes.set_ylabel("FPS (median latency)")
        axes.set_title(f"{key[0]}: {key[1]} form, {key[2]}", fontsize=10)
        axes.legend(fontsize=8)
    figure.tight_layout()
    with atomic_path(Path(path)) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
