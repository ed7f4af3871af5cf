"""The latest figures per artifact as a Markdown table, the cells not timed apart, and a chart."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from model.atomic import atomic_path
from model.tables import markdown_table
from runtimes.targets import TARGETS

from .peak import Peak, cores_used
from .records import BenchRecord

REFERENCE_TARGETS = tuple(name for name, spec in TARGETS.items() if not spec.converts)


class BenchSetup(NamedTuple):
    """What was timed and how: the records of one setup (and runtime) form one row."""

    target: str
    variant: str
    precision: str
    form: str
    threads: int | None
    device: str
    batch: int

    @classmethod
    def of(cls, record: BenchRecord) -> BenchSetup:
        return cls(*(getattr(record, name) for name in cls._fields))

    def order(self) -> tuple:
        """Rows by device, variant, form and batch, then target, precision and threads."""
        head = (self.device, self.variant, self.form, self.batch)
        return (*head, self.target, self.precision, self.threads or 0)


Metrics = dict[str, BenchRecord]  # metric -> its latest record


def _latest(
    records: list[BenchRecord],
) -> tuple[dict[tuple[BenchSetup, str], Metrics], dict[BenchSetup, BenchRecord]]:
    """Timed rows ((setup, runtime) -> metric -> latest record) and the not-timed setups.

    A setup's latest outcome wins: one timed after it failed shows as timed, and the other
    way round. The form is in the key: PyTorch's frame and stream forms share a weights file.
    """
    timed: dict[tuple[BenchSetup, str], Metrics] = {}
    refused: dict[BenchSetup, BenchRecord] = {}
    for record in sorted(records, key=lambda r: r.timestamp):
        setup = BenchSetup.of(record)
        if record.metric == "status":
            refused[setup] = record
            for key in [k for k in timed if k[0] == setup]:
                del timed[key]
        else:
            refused.pop(setup, None)
            timed.setdefault((setup, record.runtime), {})[record.metric] = record
    return timed, refused


def _fmt(record: BenchRecord | None, spec: str) -> str:
    return "-" if record is None else format(record.value, spec)


def _pair(first: BenchRecord | None, second: BenchRecord | None) -> str:
    return "-" if first is None or second is None else f"{first.value:.0f} / {second.value:.0f}"


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


def _row(setup: BenchSetup, runtime: str, metrics: Metrics, base: float | None) -> dict[str, str]:
    """One timed row's cells, by column; ``base``: PyTorch's median in the same setup."""
    median = metrics.get("median_latency")
    fraction = metrics.get("fp32_peak_fraction")
    return {
        "target": setup.target,
        "runtime": runtime,
        "precision": setup.precision,
        "variant": setup.variant,
        "form": setup.form,
        "threads": str(setup.threads or "default"),
        "batch": str(setup.batch),
        "status": next(iter(metrics.values())).status,
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
        "device": setup.device,
    }


def _peak_formulas(timed: dict[tuple[BenchSetup, str], Metrics]) -> dict[str, str]:
    """Each machine's fp32 peak formula, at the cores its rows could use."""
    formulas = {}
    for (setup, _), metrics in timed.items():
        first = next(iter(metrics.values()))
        peak = Peak.of(first.machine)
        if peak is not None and "fp32_peak_fraction" in metrics:
            cores = cores_used(setup.threads, int(first.machine.get("cores", 0)))
            formulas[f"{setup.device}, {cores} cores"] = peak.formula(cores)
    return formulas


def _not_timed(refused: dict[BenchSetup, BenchRecord]) -> list[str]:
    """The table of setups not timed, and why."""
    rows = [
        (s.target, s.precision, s.variant, s.form, record.status, record.note.replace("|", "/"))
        for s, record in sorted(refused.items(), key=lambda kv: kv[0].order())
    ]
    header = ("target", "precision", "variant", "form", "status", "why")
    return ["", "Not timed:", "", markdown_table(header, rows)]


def markdown(records: list[BenchRecord], short: bool = False) -> str:
    """Timed setups (size, Dice vs PyTorch, latency, FPS, speed-up, GFLOP/s, share of the fp32
    peak), then the setups not timed and why, then each machine's peak formula.

    ``short``: only the columns in SHORT, for a summary at the end of a demo.
    """
    timed, refused = _latest(records)
    eager = {  # PyTorch fp32 at the same threads, device and batch
        (s.variant, s.form, s.threads, s.device, s.batch): metrics["median_latency"].value
        for (s, _), metrics in timed.items()
        if "median_latency" in metrics and s.target in REFERENCE_TARGETS and s.precision == "fp32"
    }
    rows = [
        _row(s, runtime, metrics, eager.get((s.variant, s.form, s.threads, s.device, s.batch)))
        for (s, runtime), metrics in sorted(timed.items(), key=lambda kv: kv[0][0].order())
    ]
    columns = list(SHORT) if short else list(rows[0]) if rows else list(SHORT)
    lines = [markdown_table(columns, [[row[c] for c in columns] for row in rows])]
    if refused:
        lines += _not_timed(refused)
    formulas = _peak_formulas(timed)
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

    def panel(setup: BenchSetup) -> tuple[str, str, str]:
        return (
            setup.device,
            setup.form,
            f"{setup.threads or 'default'} threads, batch {setup.batch}",
        )

    def bar(setup: BenchSetup) -> tuple[str, str]:
        return (f"{setup.target}\n{setup.precision}", setup.variant)

    for (setup, _runtime), metrics in timed.items():
        if "fps" in metrics:
            fps.setdefault(panel(setup), {})[bar(setup)] = metrics["fps"].value
    for setup, record in refused.items():  # shown where its bar would be, and why not
        missing.setdefault(panel(setup), {})[bar(setup)] = record.status
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
