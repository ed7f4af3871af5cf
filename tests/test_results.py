"""``python -m bas_deploy.results``: the docs' figures rendered from results/, every file
refused without its provenance, the same data giving the same bytes."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
from click.testing import CliRunner

from bas_deploy import results as renderer
from bas_deploy.results import FRAGMENTS, STATUS_BEGIN, STATUS_END, main, render
from device_bench.records import BenchRecord, append_records
from model.provenance import add_run, read_results, write_results
from runtimes.targets import Status

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
README = "# x\n\nbefore\n\n<!-- status:begin -->\nold table\n<!-- status:end -->\n\nafter\n"


def _render(results: Path, where: Path, readme: str = README) -> list[str]:
    """Run the command on ``results`` into ``where``; its output lines (exit code checked by
    the caller through the returned lines' last)."""
    (where / "README.md").write_text(readme)
    args = ["--results", str(results), "--docs", str(where / "docs"), "--readme"]
    result = CliRunner().invoke(main, [*args, str(where / "README.md")])
    return [f"exit {result.exit_code}", *result.output.splitlines()]


def test_the_committed_docs_are_what_the_committed_results_give() -> None:
    """Every fragment, chart and the README's status table, byte for byte; results/ holds at
    least the files that make results writes, so this cannot pass on an empty folder."""
    for name in ("evaluation.json", "parity.json", "dicom_examples.json"):
        assert (RESULTS / name).is_file(), f"results/{name} is not committed"
    rendered = render(RESULTS, ROOT / "docs/generated", ROOT / "docs/img", ROOT / "README.md")
    assert rendered.files
    stale = [str(p) for p, content in rendered.files.items() if p.read_bytes() != content]
    assert not stale, f"run make render: {stale}"
    fragments = {p.name for p in rendered.files if p.parent == ROOT / "docs/generated"}
    assert {p.name for p in (ROOT / "docs/generated").glob("*.md")} == fragments


def test_a_results_file_without_provenance_is_refused_in_one_line(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    document = json.loads((RESULTS / "parity.json").read_text())
    del document["provenance"]
    (results / "parity.json").write_text(json.dumps(document))
    lines = _render(results, tmp_path)
    assert lines == [
        "exit 2",
        f"error: {results / 'parity.json'} has no provenance block (command, date, machine, "
        "versions): re-run the command that makes it",
    ]
    assert not (tmp_path / "docs").exists()
    assert (tmp_path / "README.md").read_text() == README


def test_a_benchmark_record_without_provenance_is_refused(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "speed.jsonl").write_text(json.dumps(asdict(_record())) + "\n")
    lines = _render(results, tmp_path)
    assert lines[0] == "exit 2" and len(lines) == 2
    assert lines[1].startswith(f"error: {results / 'speed.jsonl'} (record 1) has no provenance")


def test_a_missing_results_file_is_named_and_the_others_are_rendered(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    shutil.copy(RESULTS / "parity.json", results)
    lines = _render(results, tmp_path)
    assert lines[0] == "exit 2"
    assert lines[-1] == (
        f"error: results file missing: {results / 'evaluation.json'} (make results), "
        f"{results / 'dicom_examples.json'} (make results), {results / 'speed.jsonl'} "
        f"(make results-speed, on a quiet machine), {results / 'train_bench.json'} "
        f"(make results-speed, on a quiet machine), {results / 'finetune.json'} "
        f"(make results-finetune, on a quiet machine), {results / 'realism.json'} "
        "(make results-realism, hours on a quiet machine); its tables are not rendered"
    )
    written = sorted(p.name for p in (tmp_path / "docs/generated").iterdir())
    assert written == ["parity.md", "status.md"]
    readme = (tmp_path / "README.md").read_text()
    assert "old table" not in readme and readme.startswith("# x\n\nbefore\n\n")
    assert readme.endswith("<!-- status:end -->\n\nafter\n")


def test_missing_speed_files_alone_are_a_note_not_an_error(tmp_path: Path) -> None:
    """The speed files are measured apart, on a quiet machine: a checkout without them
    renders the rest and says what it left out."""
    results = tmp_path / "results"
    results.mkdir()
    for name in ("evaluation.json", "parity.json", "dicom_examples.json"):
        shutil.copy(RESULTS / name, results)
    lines = _render(results, tmp_path)
    assert lines[0] == "exit 0"
    assert lines[-1] == (
        f"note: results file missing: {results / 'speed.jsonl'} (make results-speed, on a "
        f"quiet machine), {results / 'train_bench.json'} (make results-speed, on a quiet "
        f"machine), {results / 'finetune.json'} (make results-finetune, on a quiet machine), "
        f"{results / 'realism.json'} (make results-realism, hours on a quiet machine); "
        "its tables are not rendered"
    )


def test_a_readme_without_the_status_markers_stops_the_renderer(tmp_path: Path) -> None:
    lines = _render(RESULTS, tmp_path, readme="# x\n\nno markers\n")
    assert lines == [
        "exit 2",
        f"error: {tmp_path / 'README.md'} has no {STATUS_BEGIN} ... {STATUS_END} markers: the "
        "status table has nowhere to go",
    ]
    assert not (tmp_path / "docs").exists()


def _table_rows(fragment: str) -> list[list[str]]:
    """The body rows of a fragment's table, cell by cell."""
    lines = [line for line in fragment.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_the_status_and_parity_tables_count_what_parity_json_holds() -> None:
    data = read_results(RESULTS / "parity.json")
    loaded = renderer.load_json(RESULTS / "parity.json")
    passed = sum(r["status"] == Status.PASSED for r in data["results"])
    status = _table_rows(renderer.status_fragment(loaded))
    assert sum(row.count("passed") for row in status) == passed
    assert sum(len(row) - 2 - row.count("-") for row in status) == len(data["results"])
    parity = _table_rows(renderer.parity_fragment(loaded))
    assert len(parity) == len(data["results"])
    assert sum(row[4] == "passed" for row in parity) == passed
    assert renderer.parity_fragment(loaded).splitlines()[-1].startswith(data["summary"])


def test_the_evaluation_tables_are_the_runs_figures() -> None:
    loaded = renderer.load_json(RESULTS / "evaluation.json")
    runs = loaded.data["runs"]
    rows = _table_rows(FRAGMENTS["evaluation"][1](loaded))
    assert len(rows) == len(runs)
    for run in runs:
        label = "stream" if run["history"] else "no history"
        (row,) = [r for r in rows if r[0] == f"BaS-{run['variant']}" and r[1] == label]
        assert float(row[2]) == pytest.approx(100 * run["per_frame"]["dice"], abs=0.005)
        assert int(row[8]) == run["counts"]["missed_frames"]
    ablation = _table_rows(FRAGMENTS["temporal_ablation"][1](loaded))
    assert len(ablation) == len(runs) // 2
    for row in ablation:
        assert float(row[3]) == pytest.approx(float(row[1]) - float(row[2]), abs=0.011)


def test_a_caption_names_the_command_date_machine_and_versions(tmp_path: Path) -> None:
    write_results(tmp_path / "r.json", {"x": 1}, ("numpy",))
    loaded = renderer.load_json(tmp_path / "r.json")
    block = loaded.provenance[0]
    line = renderer.caption(loaded.provenance)
    assert line.startswith(f"Made by `{block['command']}` on {block['date'][:10]}, ")
    assert block["machine"]["cpu"] in line and f"numpy {block['versions']['numpy']}" in line
    assert "\n" not in line


def test_a_run_added_again_replaces_its_own_and_keeps_the_others(tmp_path: Path) -> None:
    path = tmp_path / "evaluation.json"
    key = ("variant", "history")
    add_run(path, {"variant": "S", "history": True, "dice": 1}, key)
    add_run(path, {"variant": "S", "history": False, "dice": 2}, key)
    add_run(path, {"variant": "S", "history": True, "dice": 3}, key)
    runs = read_results(path)["runs"]
    assert [(r["history"], r["dice"]) for r in runs] == [(False, 2), (True, 3)]
    assert all(r["provenance"]["versions"]["python"] for r in runs)


def _record(**changes: object) -> BenchRecord:
    fields = {
        "name": "bas_s_frame_240_fp32.onnx",
        "target": "onnx",
        "variant": "S",
        "precision": "fp32",
        "form": "frame",
        "metric": "median_latency",
        "value": 12.5,
        "unit": "ms",
        "device": "host: test",
        "timestamp": "2026-12-06T00:00:00+00:00",
        "runtime": "onnxruntime",
        "threads": 2,
    }
    return BenchRecord(**{**fields, **changes})


def test_the_speed_fragment_and_chart_are_the_same_bytes_each_time(tmp_path: Path) -> None:
    """Records as device_bench appends them (each with its provenance), rendered twice."""
    results = tmp_path / "results"
    records = [
        _record(),
        _record(metric="fps", value=80.0, unit="fps"),
        _record(target="pytorch", runtime="pytorch", value=25.0, status=Status.REFERENCE),
        _record(target="pytorch", runtime="pytorch", metric="fps", value=40.0, unit="fps"),
    ]
    append_records(results / "speed.jsonl", records)
    first = render(results, tmp_path / "a", tmp_path / "a", _readme(tmp_path))
    second = render(results, tmp_path / "b", tmp_path / "b", _readme(tmp_path))
    speed = {p.name: c for p, c in first.files.items()}
    assert speed["speed.png"].startswith(b"\x89PNG")
    assert speed["speed.png"] == {p.name: c for p, c in second.files.items()}["speed.png"]
    assert speed["speed.md"] == {p.name: c for p, c in second.files.items()}["speed.md"]
    text = speed["speed.md"].decode()
    assert re.search(r"\| onnx \| onnxruntime \| fp32 \| S \| frame \|.* 12\.50 \|", text)
    assert text.splitlines()[-1].startswith("Made by `")


def _readme(folder: Path) -> Path:
    path = folder / "README.md"
    path.write_text(README)
    return path
