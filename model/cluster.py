"""Ray, when a command is asked to spread its work over workers.

Two ways in: an embedded Ray on this machine (``--workers`` alone), every one of its
servers bound to loopback, no dashboard, no usage report sent; or the cluster a user names
(``--ray-address``, else ``RAY_ADDRESS`` as Ray's own tools read it). Ray is imported here
only, inside :func:`import_ray`, so a command run without ``--workers`` never loads it
(``pip install 'bas-deploy[archive]'`` installs it).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

import click

from .errors import ProjectError

# What crosses between driver and workers is descriptions and result rows, never frames.
EMBEDDED_OBJECT_STORE_BYTES = 128 * 2**20

workers_option = click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Spread the work over N Ray workers: an embedded Ray on this machine (loopback "
    "only), or the cluster --ray-address or RAY_ADDRESS names.",
)
ray_address_option = click.option(
    "--ray-address",
    help="The Ray cluster to run on (HOST:PORT of its head, or ray://HOST:PORT); with "
    "--workers. Default: RAY_ADDRESS, else an embedded Ray.",
)


def cluster_address(option: str | None) -> str | None:
    """The cluster a run joins: the option, else ``RAY_ADDRESS``; None: an embedded Ray."""
    return option or os.environ.get("RAY_ADDRESS") or None


def import_ray(loopback: bool) -> ModuleType:
    """Ray, imported now. ``loopback``: an instance started by this process binds every
    server to 127.0.0.1 (Ray reads that choice when it is first imported)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if loopback:  # Ray's single-machine mode, as on macOS: local addresses only
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError:
        raise ProjectError(
            "--workers needs Ray, an optional dependency: pip install 'bas-deploy[archive]'"
        ) from None
    return ray


@contextmanager
def ray_cluster(cpus: int, address: str | None = None) -> Iterator[ModuleType]:
    """Ray for the block: the instance this process already runs (a test's), else the
    cluster at ``address``, else an embedded one of ``cpus`` CPUs; one this block started
    or joined is left again after it. The command's own SIGTERM handling is kept (Ray's
    would exit without cleaning up)."""
    ray = import_ray(loopback=address is None)
    if ray.is_initialized():
        yield ray
        return
    handler = signal.getsignal(signal.SIGTERM)
    try:
        if address is None:
            ray.init(
                address="local",
                num_cpus=cpus,
                include_dashboard=False,
                object_store_memory=EMBEDDED_OBJECT_STORE_BYTES,
                log_to_driver=False,
                logging_level=logging.ERROR,
            )
        else:
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    except (ConnectionError, RuntimeError, ValueError) as err:
        where = f"the Ray cluster at {address}" if address else "an embedded Ray"
        raise ProjectError(f"cannot start or join {where}: {' '.join(str(err).split())}") from None
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, handler)
    try:
        yield ray
    finally:
        ray.shutdown()
