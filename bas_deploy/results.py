"""Every table and chart of figures in the docs, rendered from the files that measured them.

    python -m bas_deploy.results [--check]
    python -m bas_deploy.results dicom-examples --artifact ARTIFACT

``results/`` holds what the producing commands wrote, each with its provenance block
(``model.provenance``: command line, date, machine, versions): ``evaluation.json``
(``python -m model.evaluate --results``), ``parity.json`` (``python -m converters.all
--results``), ``speed.jsonl`` (``device_bench sweep --results``), ``train_bench.json``
(``python -m model.train_bench --results``) and ``dicom_examples.json`` (the
``dicom-examples`` command below). The renderer writes one Markdown fragment per table into
``docs/generated/`` (the table, then a line naming the command, date, machine and versions
that made it), the speed chart into ``docs/img/speed.png``, and the README's status table
between its ``<!-- status:begin -->`` and ``<!-- status:end -->`` markers. The same data
gives the same bytes, so ``--check`` can tell whether the committed docs are the data's.

A results file without a provenance block is refused; one that is missing is named, in one
line, after the fragments of the others are written.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pydicom
from pydicom import examples

from converters.all import markdown as parity_table
from converters.cell import MatrixResult
from device_bench.records import RUNTIME_LIBRARIES, BenchRecord, read_records
from device_bench.report import chart as speed_chart
from device_bench.report import markdown as speed_table
from model.atomic import atomic_path
from model.config import VARIANTS
from model.errors import ProjectError
from model.options import (
    PIPELINE_THREADS,
    ProjectCommand,
    default_threads,
    existing_path,
    threads_option_saying,
)
from model.provenance import ResultsError, check_provenance, read_results, write_results
from model.tables import markdown_table
from model.train_bench import recipe_table, step_table
from model.typed import from_data
from runtimes import load
from runtimes.targets import Status
from segmentation.run import RunOptions, run_segment

RESULTS = Path("results")
GENERATED = Path("docs/generated")
IMAGES = Path("docs/img")
README = Path("README.md")
STATUS_BEGIN, STATUS_END = "<!-- status:begin -->", "<!-- status:end -->"
# What makes each results file, named where one is missing.
MAKE_RESULTS = "make results"
PRODUCERS = {
    "evaluation.json": MAKE_RESULTS,
    "parity.json": MAKE_RESULTS,
    "dicom_examples.json": MAKE_RESULTS,
    "speed.jsonl": "make results-speed, on a quiet machine",
    "train_bench.json": "make results-speed, on a quiet machine",
    "finetune.json": "make results-finetune, on a quiet machine",
    "realism.json": "make results-realism, hours on a quiet machine",
}


@dataclass(frozen=True)
class Loaded:
    """A results file's data and the provenance blocks of the runs that wrote it."""

    data: Any
    provenance: tuple[dict[str, Any], ...]


def load_json(path: Path) -> Loaded:
    """A results file of one run, or of several (``{"runs": [...]}``, each with its block)."""
    document = read_results(path)
    if "provenance" in document:
        return Loaded(document, (document["provenance"],))
    return Loaded(document, tuple(run["provenance"] for run in document["runs"]))


def load_records(path: Path) -> Loaded:
    """device_bench records, each refused without the provenance of the command that wrote it."""
    records = read_records(path)
    for number, record in enumerate(records, 1):
        check_provenance(record.provenance or None, f"{path} (record {number})")
    return Loaded(records, tuple(record.provenance for record in records))


LOADERS: dict[str, Callable[[Path], Loaded]] = {
    "evaluation.json": load_json,
    "parity.json": load_json,
    "dicom_examples.json": load_json,
    "speed.jsonl": load_records,
    "train_bench.json": load_json,
    "finetune.json": load_json,
    "realism.json": load_json,
}


VERSION_LABELS = {"git_commit": "commit"}


def _unique(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(values))


def caption(blocks: Sequence[Mapping[str, Any]]) -> str:
    """One line: the commands, dates, machines and versions of ``blocks``, each said once."""
    commands = ", ".join(f"`{c}`" for c in _unique([b["command"] for b in blocks]))
    days = ", ".join(_unique([b["date"][:10] for b in blocks]))
    hosts = [b["machine"] for b in blocks]
    machines = "; ".join(_unique([f"{m['cpu']} ({m['cores']} cores, {m['os']})" for m in hosts]))
    names = _unique([name for b in blocks for name in b["versions"]])
    versions = ", ".join(
        f"{VERSION_LABELS.get(name, name)} "
        + " / ".join(_unique([b["versions"][name] for b in blocks if name in b["versions"]]))
        for name in names
    )
    return f"Made by {commands} on {days}, {machines}; versions: {versions}."


def fragment(table: str, loaded: Loaded, lead: str = "") -> str:
    """A docs fragment: the table, a blank line, and its caption (after ``lead``, if any)."""
    return f"{table}\n\n{lead}{caption(loaded.provenance)}\n"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _runs(loaded: Loaded) -> list[dict[str, Any]]:
    """The evaluation runs, BaS-S before BaS-L, each variant's stream run first."""
    order = list(VARIANTS)
    return sorted(
        loaded.data["runs"],
        key=lambda r: (order.index(r["variant"]), r["weights"], not r["history"]),
    )


def _model(run: Mapping[str, Any]) -> str:
    shipped = run["weights"] == "shipped"
    return f"BaS-{run['variant']}" + ("" if shipped else f" ({run['weights']})")


def evaluation_table(loaded: Loaded) -> str:
    """Every run's scores on the held-out set: stream against no history, per variant."""
    header = (
        *("model", "run", "per-frame Dice", "pooled Dice", "IoU (per-frame)", "precision"),
        *("recall", "HD95 (px)", "missed lesion frames", "false-alarm frames"),
        "temporal stability",
    )
    rows = []
    for run in _runs(loaded):
        frame, counts = run["per_frame"], run["counts"]
        hd95 = frame["hd95"]
        rows.append(
            [
                _model(run),
                "stream" if run["history"] else "no history",
                *(_pct(frame["dice"]), _pct(run["pooled"]["dice"]), _pct(frame["iou"])),
                *(_pct(frame["precision"]), _pct(frame["recall"])),
                "-" if hd95 is None else f"{hd95:.2f}",
                counts["missed_frames"],
                counts["false_alarm_frames"],
                _pct(run["temporal_stability"]["mean"]),
            ]
        )
    return markdown_table(header, rows, "llrrrrrrrrr")


def framing_table(loaded: Loaded) -> str:
    """Each run's scanner screens: scores against the placed ground truth, and agreement."""
    header = ("model", "screen", "per-frame Dice", "pooled Dice", "missed", "false alarms")
    rows = [
        [
            _model(run),
            name,
            _pct(screen["per_frame"]["dice"]),
            _pct(screen["pooled"]["dice"]),
            screen["counts"]["missed_frames"],
            screen["counts"]["false_alarm_frames"],
            _pct(screen["agreement_dice"]),
        ]
        for run in _runs(loaded)
        for name, screen in run["screens"].items()
    ]
    return markdown_table((*header, "Dice vs unplaced run"), rows, "llrrrrr")


def _ablation_row(stream: Mapping[str, Any], alone: Mapping[str, Any]) -> list[object]:
    """One variant's stream run beside its run without history: what history adds."""

    def both(get: Callable[[Mapping[str, Any]], float | None]) -> list[str]:
        a, b = get(stream), get(alone)
        added = "-" if a is None or b is None else f"{100 * (a - b):+.2f}"
        return [_pct(a), _pct(b), added]

    def darkened(run: Mapping[str, Any], row: str = "darkened") -> float | None:
        lost = run.get("lost_contact")
        return None if lost is None else lost[row]["per_frame"]["dice"]

    def counts(name: str) -> str:
        return f"{stream['counts'][name]} / {alone['counts'][name]}"

    stability = [_pct(r["temporal_stability"]["mean"]) for r in (stream, alone)]
    return [
        _model(stream),
        *both(lambda r: r["per_frame"]["dice"]),
        *both(darkened),
        _pct(darkened(stream, "previous_mask")),
        *both(lambda r: r["pooled"]["dice"]),
        counts("missed_frames"),
        counts("false_alarm_frames"),
        " / ".join(stability),
    ]


def temporal_ablation_table(loaded: Loaded) -> str:
    """Per variant, the same weights streamed with and without their past frames."""
    header = (
        *("model", "per-frame Dice stream", "no history", "history adds"),
        *("darkened frames stream", "no history", "history adds", "previous frame's mask"),
        *("pooled Dice stream", "no history", "history adds"),
        *("missed (stream / no history)", "false alarms", "temporal stability"),
    )
    pairs: dict[tuple[str, ...], dict[bool, dict[str, Any]]] = {}
    for run in _runs(loaded):
        key = (run["variant"], run["weights"], str(run["temporal_window"]), run["data"])
        pairs.setdefault(key, {})[run["history"]] = run
    rows = [_ablation_row(p[True], p[False]) for p in pairs.values() if len(p) == 2]
    return markdown_table(header, rows, "l" + "r" * (len(header) - 1))


def _matrix(loaded: Loaded) -> list[MatrixResult]:
    return [from_data(MatrixResult, row, "parity.json") for row in loaded.data["results"]]


def without_empty_columns(table: str) -> str:
    """``table`` less the columns with no figure in any row (ARM64's, where none ran)."""
    lines = [line.strip("|").split("|") for line in table.splitlines()]
    body = lines[2:]
    keep = [i for i in range(len(lines[0])) if any(row[i].strip() != "-" for row in body)]
    return "\n".join("|" + "|".join(row[i] for i in keep) + "|" for row in lines)


def parity_fragment(loaded: Loaded) -> str:
    table = without_empty_columns(parity_table(_matrix(loaded)))
    return fragment(table, loaded, f"{loaded.data['summary']}. ")


VARIANT_FORMS = (("S", "frame"), ("S", "stream"), ("L", "frame"), ("L", "stream"))


def status_table(loaded: Loaded) -> str:
    """Target x precision rows, a column per variant and form: each cell's parity status."""
    cells = {(r.target, r.precision, r.variant, r.form): r for r in _matrix(loaded)}
    rows = []
    for target, precision in _unique([(r.target, r.precision) for r in cells.values()]):
        row: list[object] = [target, precision]
        for variant, form in VARIANT_FORMS:
            found = cells.get((target, precision, variant, form))
            row.append("-" if found is None else _status_word(found.status))
        rows.append(row)
    header = ("target", "precision", *(f"BaS-{v} {f}" for v, f in VARIANT_FORMS))
    return markdown_table(header, rows)


def _status_word(status: Status) -> str:
    return "passed" if status == Status.PASSED else f"**{status}**"


def status_fragment(loaded: Loaded) -> str:
    return fragment(status_table(loaded), loaded, f"{loaded.data['summary']}. ")


def speed_fragment(loaded: Loaded) -> str:
    return fragment(speed_table(loaded.data), loaded)


def train_bench_fragment(loaded: Loaded) -> str:
    data = ", ".join(
        f"{ms:.2f} ms at {size}" for size, ms in loaded.data["data_ms_per_scored_frame"].items()
    )
    lead = f"Data (loading and augmenting) costs, of one core per scored frame: {data}. "
    return fragment(step_table(loaded.data["steps"]), loaded, lead)


def train_bench_recipe_fragment(loaded: Loaded) -> str | None:
    """The projected compute of the recipe's stages; none where no stage was given."""
    recipe = loaded.data["recipe"]
    return fragment(recipe_table(recipe), loaded) if recipe else None


def _before_after(before: float | int | None, after: float | int | None, percent: bool) -> str:
    shown = _pct if percent else (lambda n: "-" if n is None else str(n))
    return f"{shown(before)} → {shown(after)}"


FINETUNE_COUNTS = ("missed_frames", "false_alarm_frames")


def finetune_table(loaded: Loaded) -> str:
    """Each fine-tune: its held-out videos and every test folder, before → after."""
    header = (
        *("fine-tune", "scored on", "frames", "per-frame Dice (%)", "pooled Dice (%)"),
        *("missed lesion frames", "false alarms", "history's gain (points)"),
    )
    rows = []
    for run in loaded.data["runs"]:
        recipe = " ".join(f"`--set {item}`" for item in run["overrides"]) or "the recipe"
        name = (
            f"BaS-{run['variant']}, {recipe}: {run['epochs']} epochs, "
            f"{run['training_minutes']:.1f} min on `{run['data']}`"
        )
        scored = [
            (f"held out: {', '.join(run['held_out_videos'])}", run["before"], run["after"]),
            *((f"`{t['data']}`", t["before"], t["after"]) for t in run["tests"]),
        ]
        for where, before, after in scored:
            rows.append(
                [
                    name,
                    where,
                    after["frames"],
                    *(_before_after(before[k], after[k], True) for k in ("per_frame", "pooled")),
                    *(_before_after(before[k], after[k], False) for k in FINETUNE_COUNTS),
                    _before_after(before["history_gain"], after["history_gain"], True),
                ]
            )
    return markdown_table(header, rows)


def _realism_row(run: Mapping[str, Any]) -> list[object]:
    """One row of the realism ablation: what trained it, then its scores on each test set."""
    if run["row"] == "shipped":
        trained = "shipped weights (for reference)"
    else:
        changes = ", ".join(run["widen"]) or "none (the recipe)"
        if run.get("widen_share", 1.0) < 1.0:
            changes += f" in {run['widen_share']:.0%} of the videos"
        trained = f"{changes}: {run['epochs']} epochs, {run['training_minutes']:.0f} min"
    kept, unseen, held = run["kept_back"], run["unseen"], run["held_out"]
    return [
        f"BaS-{run['variant']}",
        trained,
        f"{_pct(kept['per_frame'])} / {_pct(kept['pooled'])}",
        f"{kept['missed_frames']} / {kept['false_alarm_frames']}",
        _pct(unseen["per_frame"]),
        _points(unseen["history_gain"]),
        _points(unseen["darkened_history_gain"]),
        f"{_pct(held['per_frame'])} / {_pct(held['pooled'])}",
        f"{held['missed_frames']} / {held['false_alarm_frames']}",
    ]


def _points(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.2f}"


def realism_table(loaded: Loaded) -> str:
    """Each training set's scanner changes against the scores on video no row trained on."""
    header = (
        *("BaS", "scanner changes in training (stage 3)"),
        *("kept back: per-frame / pooled Dice (%)", "kept back: missed / false alarms"),
        *("unseen seed: per-frame Dice (%)", "history's gain (points)", "on darkened frames"),
        *("held-out seed 1: per-frame / pooled (%)", "missed / false alarms"),
    )
    return markdown_table(header, [_realism_row(run) for run in loaded.data["runs"]])


def _area(figures: Mapping[str, Any]) -> str:
    """Mean / largest lesion area, in pixels, and in mm² where the loop is calibrated."""
    text = f"{figures['mean_area_px']:,.0f} / {figures['largest_area_px']:,.0f} px"
    if figures["units"] == "mm":
        text += f"; {figures['mean_area']:.1f} / {figures['largest_area']:.1f} mm²"
    return text


def _crop(example: Mapping[str, Any]) -> str:
    cropped = example["crop_to_region"]
    if "refused" in cropped:
        return f"refused: {cropped['refused']}"
    return f"{cropped['crop_source']} {cropped['crop']}: {_area(cropped)}"


def dicom_examples_table(loaded: Loaded) -> str:
    """pydicom's ultrasound examples through one artifact: whole frame, and cropped."""
    header = ("example", "frames", "calibration", "whole frame: mean / max lesion area")
    rows = [
        [
            f"`{e['example']}`{', ' + e['copy'] if e['copy'] else ''} ({e['description']})",
            e["frames"],
            e["whole_frame"]["calibration"],
            _area(e["whole_frame"]),
            _crop(e),
        ]
        for e in loaded.data["examples"]
    ]
    return markdown_table((*header, "`--crop-to-region`: region, mean / max area"), rows)


def dicom_fragment(loaded: Loaded) -> str:
    data = loaded.data
    threads = f"{data['threads']} thread{'' if data['threads'] == 1 else 's'}"
    lead = f"Through `{data['artifact']}` ({data['runtime']}, {threads}). "
    return fragment(dicom_examples_table(loaded), loaded, lead)


# docs/generated/<name>.md: (results file, renderer; a renderer may have nothing to show)
FRAGMENTS: dict[str, tuple[str, Callable[[Loaded], str | None]]] = {
    "evaluation": ("evaluation.json", lambda d: fragment(evaluation_table(d), d)),
    "framing": ("evaluation.json", lambda d: fragment(framing_table(d), d)),
    "temporal_ablation": ("evaluation.json", lambda d: fragment(temporal_ablation_table(d), d)),
    "parity": ("parity.json", parity_fragment),
    "status": ("parity.json", status_fragment),
    "speed": ("speed.jsonl", speed_fragment),
    "train_bench": ("train_bench.json", train_bench_fragment),
    "train_bench_recipe": ("train_bench.json", train_bench_recipe_fragment),
    "dicom_examples": ("dicom_examples.json", dicom_fragment),
    "finetune": ("finetune.json", lambda d: fragment(finetune_table(d), d)),
    "realism": ("realism.json", lambda d: fragment(realism_table(d), d)),
}


def _chart_bytes(records: list[BenchRecord]) -> bytes:
    """The speed chart's PNG (matplotlib writes no date into a PNG: same records, same bytes)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "speed.png"
        with contextlib.redirect_stdout(io.StringIO()):
            speed_chart(records, path)
        return path.read_bytes()


def with_status(readme: str, block: str, where: Path) -> str:
    """``readme`` with ``block`` between the status markers; refused where they are absent."""
    begin, end = readme.find(STATUS_BEGIN), readme.find(STATUS_END)
    if begin < 0 or end < begin:
        raise ResultsError(
            f"{where} has no {STATUS_BEGIN} ... {STATUS_END} markers: the status table "
            "has nowhere to go"
        )
    return f"{readme[: begin + len(STATUS_BEGIN)]}\n{block}{readme[end:]}"


@dataclass(frozen=True)
class Rendered:
    """Every output the data gives (path -> bytes) and the results files that are missing."""

    files: dict[Path, bytes]
    missing: tuple[Path, ...]


def render(results: Path, generated: Path, images: Path, readme: Path) -> Rendered:
    """Read every results file and render what the present ones give; nothing is written."""
    if not readme.is_file():
        raise ResultsError(f"{readme} not found: the status table has nowhere to go")
    readme_text = readme.read_text(encoding="utf-8")
    with_status(readme_text, "", readme)  # the markers, checked before any work
    loaded, missing = {}, []
    for name, loader in LOADERS.items():
        path = results / name
        if path.exists():
            loaded[name] = loader(path)
        else:
            missing.append(path)
    files: dict[Path, bytes] = {}
    for name, (source, renderer) in FRAGMENTS.items():
        text = renderer(loaded[source]) if source in loaded else None
        if text is not None:
            files[generated / f"{name}.md"] = text.encode()
    if "speed.jsonl" in loaded:
        files[images / "speed.png"] = _chart_bytes(loaded["speed.jsonl"].data)
    if "parity.json" in loaded:
        block = status_fragment(loaded["parity.json"])
        files[readme] = with_status(readme_text, block, readme).encode()
    return Rendered(files, tuple(missing))


def _missing_line(missing: Sequence[Path]) -> str:
    named = ", ".join(f"{p} ({PRODUCERS[p.name]})" for p in missing)
    return f"results file missing: {named}; its tables are not rendered"


def _write(files: Mapping[Path, bytes]) -> None:
    """Each file whose bytes change, atomically; the others are left as they are."""
    for path in _stale(files):
        with atomic_path(path) as tmp:
            tmp.write_bytes(files[path])
        click.echo(f"rendered {path}")


def _stale(files: Mapping[Path, bytes]) -> list[Path]:
    return [p for p, content in files.items() if not p.is_file() or p.read_bytes() != content]


class _Results(ProjectCommand, click.Group):
    """The renderer, with the producers that have no command of their own as subcommands."""


@click.group(name="python -m bas_deploy.results", cls=_Results, invoke_without_command=True)
@click.option(
    "--results",
    "results_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=RESULTS,
    show_default=True,
    help="Folder of the results files.",
)
@click.option(
    "--docs",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("docs"),
    show_default=True,
    help="Docs folder: fragments go to generated/, charts to img/.",
)
@click.option(
    "--readme",
    type=click.Path(path_type=Path, dir_okay=False),
    default=README,
    show_default=True,
    help="The file whose status markers receive the status table.",
)
@click.option(
    "--check",
    is_flag=True,
    help="Write nothing; exit 2 naming each output that differs from what the data gives.",
)
@click.pass_context
def main(ctx: click.Context, results_dir: Path, docs: Path, readme: Path, check: bool) -> None:
    """Render docs/generated/*.md, docs/img/speed.png and the README's status table from
    the results files."""
    if ctx.invoked_subcommand is not None:
        return
    rendered = render(results_dir, docs / GENERATED.name, docs / IMAGES.name, readme)
    if check:
        stale = _stale(rendered.files)
        if stale:
            raise ResultsError(
                f"not what the results give: {', '.join(map(str, stale))} "
                "(python -m bas_deploy.results renders them)"
            )
    else:
        _write(rendered.files)
    if any(PRODUCERS[path.name] == MAKE_RESULTS for path in rendered.missing):
        raise ResultsError(_missing_line(rendered.missing))
    if rendered.missing:  # speed figures: measured apart, on a quiet machine
        click.echo(f"note: {_missing_line(rendered.missing)}", err=True)


# pydicom's ultrasound examples (``pydicom.examples``), as its documentation names them.
DICOM_EXAMPLES = ("ybr_color", "rgb_color", "palette_color", "jpeg2k")
# The cine loop's region was written for a 640 x 480 frame and the file holds 320 x 240;
# the calibrated copy carries it halved, at the frame's own scale (MinX0, MinY0, MaxX1,
# MaxY1, inclusive; cm per pixel).
HALVED_REGION = (42, 15, 297, 207)
HALVED_DELTA_CM = 0.0102
HALVED = "its region halved to the frame's scale"


def calibrated_copy(folder: Path) -> Path:
    """pydicom's example cine loop with its region halved to the frame's scale."""
    ds = pydicom.dcmread(examples.get_path("ybr_color"))
    region = ds.SequenceOfUltrasoundRegions[0]
    region.RegionLocationMinX0, region.RegionLocationMinY0 = HALVED_REGION[:2]
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = HALVED_REGION[2:]
    region.PhysicalDeltaX = region.PhysicalDeltaY = HALVED_DELTA_CM
    path = folder / "ybr_color_calibrated.dcm"
    ds.save_as(path)
    return path


def _describe(path: Path) -> str:
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return (
        f"{ds.SOPClassUID.name}, {ds.file_meta.TransferSyntaxUID.name}, "
        f"{ds.PhotometricInterpretation}, {ds.Columns} x {ds.Rows}"
    )


def _segmented(session: Any, path: Path, out: Path, crop: bool) -> dict[str, Any]:
    """What ``python -m segmentation --input PATH [--crop-to-region]`` reports of one loop:
    its summary.json's calibration and measurements, and the pixel areas of frames.csv."""
    try:
        run_segment(session, path, out, RunOptions(crop_to_region=crop))
    except ProjectError as err:
        return {"refused": str(err).removeprefix(f"{path}: ")}
    summary = json.loads((out / "summary.json").read_text())
    (source,) = summary["sources"]
    report = source["dicom_measurement_report"]
    with open(out / "frames.csv", newline="") as table:  # one loop: its outputs at the top
        areas = [float(row["lesion_area_px"]) for row in csv.DictReader(table)]
    return {
        "frames": summary["frames_segmented"],
        "calibration": source["calibration"],
        "calibrated_region": source["calibrated_region"],
        "mm_per_px": source["mm_per_px"],
        "crop": source["crop"],
        "crop_source": source["crop_source"],
        "units": report["units"],
        "mean_area": report["mean_area"],
        "largest_area": report["largest_area"],
        "mean_area_px": sum(areas) / len(areas),
        "largest_area_px": max(areas),
    }


@main.command("dicom-examples", cls=click.Command)
@click.option(
    "--artifact", type=existing_path, required=True, help="Converted artifact to segment with."
)
@threads_option_saying(PIPELINE_THREADS)
@click.option(
    "--results",
    "results_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=RESULTS / "dicom_examples.json",
    show_default=True,
    help="Where the figures go, with their provenance.",
)
def dicom_examples(artifact: Path, threads: int | None, results_file: Path) -> None:
    """Segment pydicom's ultrasound examples (and the cine loop with its region fitted to
    the frame) whole and with --crop-to-region, as python -m segmentation does."""
    threads = threads or default_threads()
    session = load(artifact, threads=threads)
    found = []
    with tempfile.TemporaryDirectory() as folder:
        inputs = [(name, None, examples.get_path(name)) for name in DICOM_EXAMPLES]
        inputs.insert(1, ("ybr_color", HALVED, calibrated_copy(Path(folder))))
        for number, (name, copy, path) in enumerate(inputs):
            whole = _segmented(session, path, Path(folder) / f"{number}-whole", crop=False)
            cropped = _segmented(session, path, Path(folder) / f"{number}-crop", crop=True)
            found.append(
                {
                    "example": name,
                    "copy": copy,
                    "description": _describe(Path(path)),
                    "frames": whole["frames"],
                    "whole_frame": whole,
                    "crop_to_region": cropped,
                }
            )
            click.echo(f"{name}{', ' + copy if copy else ''}: {_area(whole)}", err=True)
    manifest = session.manifest
    document = {
        "artifact": Path(artifact).name,
        "target": manifest.target,
        "runtime": session.runtime,
        "threads": threads,
        "weights_sha256": manifest.weights.sha256,
        "examples": found,
    }
    decoders = ("pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle")
    libraries = ("pydicom", *decoders, "highdicom", *RUNTIME_LIBRARIES)
    write_results(results_file, document, libraries)
    click.echo(f"wrote {results_file}")


if __name__ == "__main__":
    main()
