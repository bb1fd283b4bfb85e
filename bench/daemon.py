"""The daemon's costs, each beside a comparison measured in the same run.

1. ``dcpue run --fast-forward`` of the bundled site: simulated days per wall minute (and per
   CPU minute), beside ``dcpue simulate`` of the same days (the twin into the store alone);
   its end is seen by ``/healthz`` twice a second.
2. ``/api/pue`` and ``/healthz`` latency (p50/p99 of sequential requests, in turn, at most
   ``--rate`` turns per second) while the same fast-forward runs again, beside a plain
   Starlette hello-world app served by uvicorn, asked in the same turns under the same load
   (the daemon answering them runs slower: its speed then is printed too).
3. Start-up and the cost of one simulated minute of jobs (write-back + alerts) against stores
   of 1 and 30 simulated days (``--sizes``), beside the raw DuckDB ``count(*)`` of that store.

With ``--burn N``, N CPU burners (``python -c 'while 1: pass'``) run beside sections 1 and 2:
the latency of a loaded machine.

Usage: ``python bench/daemon.py [--days 10] [--sizes 1,30] [--burn 1] [--rate 10]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

HELLO = textwrap.dedent("""
    import sys, uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    async def hello(request):
        return JSONResponse({"hello": "world"})
    uvicorn.run(Starlette(routes=[Route("/", hello)]), host="127.0.0.1",
                port=int(sys.argv[1]), log_level="warning")
""")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def dcpue(*argv: str) -> list[str]:
    return [sys.executable, "-m", "dcpue", *argv]


def latencies(urls: list[str], daemon: str, rate: float) -> tuple[list[list[float]], float]:
    """Wall times (s) of sequential GETs of ``urls`` in turn, ``rate`` turns per second at
    most, until the daemon's fast-forward has finished (paced: a tight loop would load the
    daemon by its own speed); with the moment (``perf_counter``) it was seen finished."""
    out: list[list[float]] = [[] for _ in urls]
    with httpx.Client(timeout=60) as client:
        next_turn = time.perf_counter()
        while True:
            for i, url in enumerate(urls):
                t0 = time.perf_counter()
                client.get(url).raise_for_status()
                out[i].append(time.perf_counter() - t0)
            if client.get(f"{daemon}/healthz").json()["clock"] == "stopped":
                return out, time.perf_counter()
            next_turn += 1.0 / rate
            time.sleep(max(0.0, next_turn - time.perf_counter()))


def counter(metrics_text: str, name: str) -> float:
    """A single-valued counter of a Prometheus text page."""
    return next(float(ln.split()[-1]) for ln in metrics_text.splitlines()
                if ln.startswith(f"{name} "))


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 \
        else values[0]


def wait_url(url: str, proc: subprocess.Popen | None, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise TimeoutError(url)


def daemon_url(store: Path, proc: subprocess.Popen) -> str:
    info = Path(f"{store}.daemon.json")
    deadline = time.monotonic() + 120
    while not info.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the daemon did not start")
        time.sleep(0.1)
    return json.loads(info.read_text())["url"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fast_forward(tmp: Path, days: float, burn: int = 0, rate: float = 10.0) -> None:
    """Sections 1 and 2 (with ``burn`` CPU burners beside them)."""
    burners = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(burn)]
    try:
        _fast_forward(tmp, days, rate)
    finally:
        for b in burners:
            b.kill()
            b.wait()


@dataclass
class Run:
    """One ``dcpue run --fast-forward``: wall seconds (from the process start and from the
    API up), the daemon's own CPU seconds, its fits and their CPU seconds, and the latencies
    (s) of the URLs asked meanwhile."""

    wall_s: float
    from_up_s: float
    cpu_s: float
    fits: float
    fit_cpu_s: float
    latencies: list[list[float]]


def _run(tmp: Path, name: str, days: float, urls: list[str], rate: float) -> Run:
    """Fast-forward the bundled site ``days`` into a new store, asking ``urls`` (``{api}``
    is the daemon's URL) in turn at most ``rate`` turns per second until it is done."""
    tmp.mkdir(exist_ok=True)  # the store's folder holds its model file too: one per run
    store = tmp / f"{name}.duckdb"
    t0 = time.perf_counter()
    proc = subprocess.Popen(dcpue("run", "--fast-forward", str(days), "--serve", "--port", "0",
                                  "--store", str(store), "--log-level", "WARNING"),
                            stdout=subprocess.DEVNULL)
    try:
        url = daemon_url(store, proc)
        t_up = time.perf_counter()
        asked, t_end = latencies([u.format(api=url) for u in urls], url, rate)
        page = httpx.get(f"{url}/metrics").text
        fits, fit_cpu = counter(page, "dcpue_model_fits_total"), counter(
            page, "dcpue_model_fit_cpu_seconds_total")
        own_cpu = process_cpu_s(proc.pid)
        proc.terminate()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    # CPU: the daemon process's own (read before it stops) and its fits' (the trainer's worker
    # process, a grandchild: counted by the daemon)
    return Run(t_end - t0, t_end - t_up, own_cpu, fits, fit_cpu, asked)


def _fast_forward(tmp: Path, days: float, rate: float) -> None:
    from dcpue.config import example_path

    config = tmp / "site.toml"
    config.write_text(example_path("single_hall").read_text())
    cpu0, t0 = children_cpu_s(), time.perf_counter()
    subprocess.run(dcpue("simulate", "--config", str(config), "--days", str(days), "--store",
                         str(tmp / "sim.duckdb"), "--no-progress"), check=True,
                   stdout=subprocess.DEVNULL)
    sim_wall, sim_cpu = time.perf_counter() - t0, children_cpu_s() - cpu0
    # its end seen by /healthz twice a second: the fast-forward alone
    alone = _run(tmp / "alone", "ff", days, [], 2.0)
    print(f"1. fast-forward of the bundled site, {days:g} simulated days "
          f"(load {os.getloadavg()[0]:.1f} at its end)")
    print(f"   dcpue run --fast-forward   {days / alone.wall_s * 60:7.1f} days/min wall "
          f"({alone.wall_s:6.1f} s, {days / (alone.cpu_s + alone.fit_cpu_s) * 60:6.1f} days per "
          f"CPU minute; {days / alone.from_up_s * 60:.1f} days/min from the API up, "
          f"{alone.wall_s - alone.from_up_s:.1f} s start-up; daemon process "
          f"{alone.cpu_s:.1f} s CPU, {alone.fits:g} model fits {alone.fit_cpu_s:.1f} s CPU in "
          "the trainer's process)")
    print(f"   dcpue simulate (comparison){days / sim_wall * 60:7.1f} days/min wall "
          f"({sim_wall:6.1f} s, {days / sim_cpu * 60:6.1f} days per CPU minute)")

    hello_port = free_port()
    hello = subprocess.Popen([sys.executable, "-c", HELLO, str(hello_port)])
    try:
        wait_url(f"http://127.0.0.1:{hello_port}/", hello)
        polled = _run(tmp / "polled", "ff", days, [
            "{api}/api/pue", "{api}/healthz", f"http://127.0.0.1:{hello_port}/"], rate)
    finally:
        hello.terminate()
        hello.wait()
    print(f"2. latency during the same fast-forward run again (sequential GETs, at most "
          f"{rate:g} turns/s; it ran at {days / polled.wall_s * 60:.1f} days/min, daemon "
          f"{polled.cpu_s:.1f} s CPU), ms: p50 / p99 / max / n")
    for name, values in zip(("/api/pue", "/healthz", "Starlette hello-world (comparison)"),
                            polled.latencies, strict=True):
        if values:
            print(f"   {name:<36} {pct(values, 50) * 1000:7.1f} / {pct(values, 99) * 1000:7.1f}"
                  f" / {max(values) * 1000:7.1f} / {len(values)}")


def minute_cost(tmp: Path, sizes: list[float]) -> None:
    """Section 3, in this process."""
    from dcpue.config import example_path, load_site
    from dcpue.core.store import Store
    from dcpue.service.daemon import Runtime
    from dcpue.service.demo import SimClock
    from dcpue.twin.runner import simulate_into
    from dcpue.twin.simulator import Twin

    print("3. start-up and one simulated minute of jobs (write-back + alerts), by store size")
    for days in sizes:
        site = load_site(example_path("single_hall"))
        site.store.path = tmp / f"size-{days:g}.duckdb"
        with Store(site.store.path) as store:
            twin = Twin(site)
            simulate_into(twin, store, days, progress=False)
            end = twin.now_ms - 60_000  # the newest step
            t0 = time.perf_counter()
            rows = store.count()
            count_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            runtime = Runtime(site, store, SimClock(end), hold_future=True)
            start_s = time.perf_counter() - t0
            costs: dict[bool, list[float]] = {True: [], False: []}
            for k in range(120):
                now = end - 120 * 60_000 + k * 60_000  # the last two hours, minute by minute
                runtime.clock.now = now
                # First hour as in real time (write-back rows and alert state stored every
                # minute), then as in fast-forward (stored once per chunk).
                runtime.save_each_job = k < 60
                t0 = time.perf_counter()
                runtime.run_job_sync("write_back", now)
                runtime.run_job_sync("alerts", now)
                costs[runtime.save_each_job].append(time.perf_counter() - t0)
            real, fast = (sorted(costs[m])[len(costs[m]) // 2] * 1000 for m in (True, False))
            runtime.finish(runtime.clock())
            t0 = time.perf_counter()
            Runtime(site, store, SimClock(end), hold_future=True)
            restart_s = time.perf_counter() - t0
            print(f"   {days:5g} days ({rows:>11,} rows): start-up {start_s:5.2f} s rebuilt, "
                  f"{restart_s:5.2f} s restored; minute median "
                  f"{real:6.2f} ms real time, {fast:6.2f} ms fast-forward; raw DuckDB count(*) "
                  f"{count_s * 1000:6.2f} ms (comparison)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=10.0,
                        help="fast-forward length of sections 1 and 2 (0 skips them)")
    parser.add_argument("--sizes", default="1,30", help="store sizes of section 3 (days); "
                        "'' skips it")
    parser.add_argument("--burn", type=int, default=0,
                        help="CPU burners beside sections 1 and 2")
    parser.add_argument("--rate", type=float, default=10.0,
                        help="section 2: turns of GETs per second at most")
    args = parser.parse_args()
    print(f"bench/daemon.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, {args.burn} CPU burner(s) "
          "beside the fast-forward")
    with tempfile.TemporaryDirectory() as tmp:
        if args.days > 0:
            fast_forward(Path(tmp), args.days, args.burn, args.rate)
        if args.sizes:
            minute_cost(Path(tmp), [float(s) for s in args.sizes.split(",")])


if __name__ == "__main__":
    main()
