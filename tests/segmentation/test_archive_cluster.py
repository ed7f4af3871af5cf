"""An archive on a simulated 3-node Ray cluster (``ray.cluster_utils.Cluster``, one CPU a
node, loopback) that loses a node mid-run: the loops it held are done elsewhere, and the
run ends with every loop complete, exactly once, and nothing partial.

Its own module: a process holds one Ray at a time, and test_archive.py's is embedded.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import pytest

from model.cluster import import_ray
from model.data.synth import write_dataset
from runtimes import load_pytorch
from segmentation.archive import LOOP_MARKER, OK, PARTIAL, run_archive

pytestmark = pytest.mark.slow  # a Ray cluster of three nodes
LOOPS = 8


def _complete(out: Path) -> list[Path]:
    return [p for p in out.iterdir() if (p / LOOP_MARKER).is_file()] if out.is_dir() else []


def test_a_node_lost_mid_run_has_its_loops_done_elsewhere_once(tmp_path: Path) -> None:
    ray = import_ray(loopback=True)
    from ray.cluster_utils import Cluster

    write_dataset(tmp_path / "ds", videos=LOOPS, frames=12, seed=1, mp4=True)
    out = tmp_path / "out"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        doomed = [cluster.add_node(num_cpus=1) for _ in range(2)][0]
        ray.init(address=cluster.address, log_to_driver=False)
        with ThreadPoolExecutor(1) as pool:
            open_session = partial(load_pytorch, "S", "shipped", "stream")
            running = pool.submit(run_archive, open_session, tmp_path / "ds" / "videos", out, 3)
            deadline = time.monotonic() + 120
            while not _complete(out) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert _complete(out), "no loop completed"
            cluster.remove_node(doomed)
            totals = running.result(timeout=240)
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert totals.workers_lost >= 1 and totals.retried
    assert [row.status for row in totals.rows] == [OK] * LOOPS
    names = [f"synth_0001_{i:04d}" for i in range(LOOPS)]
    assert sorted(p.name for p in _complete(out)) == names
    assert not [p for p in out.iterdir() if PARTIAL in p.name]
    for name in names:
        row = json.loads((out / name / LOOP_MARKER).read_text())["row"]
        assert row["frames"] == len(list((out / name / "masks").iterdir())) == 12
