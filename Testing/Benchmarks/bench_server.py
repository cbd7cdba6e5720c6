"""Server benchmark: upload of a 512x512x300 int16 CT and one click after caching, over localhost,
against the local worker in the same run.

- upload: ``load_volume`` of the CT written as compressed NRRD (what the Slicer module writes);
  local: the worker reads the file; remote: SHA-256, "do you have it?", the bytes, the server
  reads them; then the same file again (deduplicated: no bytes sent).
- click: ``match`` of one point with a 25 mm radius, features cached (weight-free MIND-SSC, the
  same CT as fixed and moving), median of ``--clicks`` repeats; each side its own process.
- CPU: for each click, the CPU seconds of the process doing the job (the worker, or the server)
  and of this client process (for the remote click: HTTP, TLS and JSON), from psutil when it is
  installed; wall time on a shared machine includes waiting for a core, CPU time does not. The
  server's CPU includes its HTTP/TLS threads. CPU figures are means (the kernel counts in 10 ms
  ticks), wall figures medians.

Run:  OMP_NUM_THREADS=1 .venv/bin/python Testing/Benchmarks/bench_server.py [--shape 512,512,300] [--clicks 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "Python" / "service"))
sys.path.insert(0, str(HERE.parents[1]))


def synthetic_ct(shape) -> object:
    """Air around an elliptic body of soft tissue with CT-like noise (so the file compresses like a CT)."""
    from MedDIFTLib.data.geometry import Volume

    rng = np.random.default_rng(0)
    i, j = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    body = (i / 0.9) ** 2 + (j / 0.7) ** 2 < 1
    arr = np.full(shape, -1000, np.int16)
    for k in range(shape[2]):
        sl = np.where(body, 40, -1000).astype(np.int16)
        sl[body] += rng.normal(0, 20, int(body.sum())).astype(np.int16)
        lung = ((i - 0.35) / 0.3) ** 2 + (j / 0.45) ** 2 < 1
        sl[lung] = -850 + rng.normal(0, 30, int(lung.sum())).astype(np.int16)
        arr[:, :, k] = sl
    return Volume(arr, np.diag([0.7, 0.7, 1.0, 1.0]), "CT")


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def prepare(client, path):
    up, _ = timed(lambda: client.request("load_volume", name="f", path=str(path)))
    again, res = timed(lambda: client.request("load_volume", name="m", path=str(path)))
    ext, _ = timed(lambda: (client.request("extract", name="f"), client.request("extract", name="m")))
    return {"upload_s": up, "second_upload_s": again, "dedup": res.get("deduplicated"), "extract_s": ext}


def cpu_seconds(pid):
    """User + system CPU seconds of a process so far (None without psutil or the process)."""
    try:
        import psutil

        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    except Exception:  # psutil missing, or the process gone
        return None


def clicks(clients: dict, pids: dict, n: int, point) -> dict:
    """Clicks alternating between the clients, so that the load of a shared machine hits both alike."""
    times = {k: [] for k in clients}
    cpu = {k: [] for k in clients}  # CPU seconds of the process that did the job
    own = {k: [] for k in clients}  # CPU seconds of this (client) process
    device = []  # the server's own time for each remote click: the rest is network, TLS and HTTP
    for i in range(n + 1):
        for key, client in clients.items():
            c0, o0 = cpu_seconds(pids[key]), time.process_time()
            t, _ = timed(
                lambda client=client: client.request("match", fixed="f", moving="m", points=[point], labels=["p"])
            )
            c1, o1 = cpu_seconds(pids[key]), time.process_time()
            if i:  # the first builds the matcher's norm maps
                times[key].append(t)
                own[key].append(o1 - o0)
                if c0 is not None and c1 is not None:
                    cpu[key].append(c1 - c0)
                if getattr(client, "last_status", None):
                    device.append(t - client.last_status["seconds"])
    out = {
        k: {
            "click_ms": 1e3 * statistics.median(v),
            "click_p90_ms": 1e3 * sorted(v)[int(0.9 * len(v)) - 1],
            # CPU: means, since the kernel counts CPU time in ticks (10 ms): a median would be a tick count
            "click_cpu_ms": 1e3 * statistics.fmean(cpu[k]) if cpu[k] else float("nan"),
            "client_cpu_ms": 1e3 * statistics.fmean(own[k]),
        }
        for k, v in times.items()
    }
    out["remote"]["overhead_ms"] = 1e3 * statistics.median(device)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="512,512,300")
    ap.add_argument("--clicks", type=int, default=20)
    args = ap.parse_args()
    shape = tuple(int(s) for s in args.shape.split(","))
    from server_helpers import ServerProcess, make_tls, make_tokens

    from MedDIFTLib.data.image_io import write_volume
    from MedDIFTLib.service.client import WorkerClient

    folder = Path(tempfile.mkdtemp(prefix="meddift-bench-server-"))
    vol = synthetic_ct(shape)
    path = write_volume(vol, folder / "ct.nrrd")
    print(
        f"CT {shape} int16: {vol.array.nbytes / 2**20:.0f} MB raw, {path.stat().st_size / 2**20:.0f} MB as "
        "compressed NRRD",
        flush=True,
    )
    point = (vol.ijk_to_ras @ np.array([s / 2 for s in shape] + [1.0]))[:3].tolist()
    engine, matching = {"backbone": "mind-ssc"}, {"radius_mm": 25.0}
    cache = folder / "cache"
    env = dict(os.environ, MEDDIFT_WEIGHTS_DIR=str(folder / "none"), MEDDIFT_CACHE_DIR=str(cache))
    token_file, tokens = make_tokens(folder)
    tls = make_tls(folder / "tls")
    local = WorkerClient(env=env)
    local.start(timeout=120)
    server = ServerProcess(folder / "srv", "--token-file", token_file, "--device", "cpu", tls=tls, cache_dir=cache)
    try:
        local.request("configure", engine={**engine, "device": "cpu"}, matching=matching)
        res_local = prepare(local, path)  # extracts and fills the feature cache
        remote = server.client(tokens[0])
        remote.request("configure", engine=engine, matching=matching)
        res_remote = prepare(remote, path)  # reads the features from the cache
        both = clicks(
            {"local": local, "remote": remote}, {"local": local.pid, "remote": server.proc.pid}, args.clicks, point
        )
        res_local.update(both["local"])
        res_remote.update(both["remote"])
        remote.stop()
    finally:
        local.kill()
        server.kill()
        shutil.rmtree(folder, ignore_errors=True)  # the CT, its features and the server's log: 550 MB
    print(f"{'':28s}{'local worker':>14s}{'server (TLS)':>14s}")
    for key in (
        "upload_s",
        "second_upload_s",
        "extract_s",
        "click_ms",
        "click_p90_ms",
        "click_cpu_ms",
        "client_cpu_ms",
    ):
        print(f"{key:28s}{res_local[key]:14.3f}{res_remote[key]:14.3f}")
    print(f"second upload deduplicated on the server: {res_remote['dedup']}")
    print(f"remote click: {res_remote['overhead_ms']:.1f} ms of it outside the server's job (network, TLS, HTTP)")
    print(
        f"remote click - local click: {res_remote['click_ms'] - res_local['click_ms']:+.1f} ms wall, "
        f"{res_remote['click_cpu_ms'] + res_remote['client_cpu_ms'] - res_local['click_cpu_ms'] - res_local['client_cpu_ms']:+.1f} "
        "ms CPU (worker or server, plus this client) (target: <= +20 ms)"
    )
    print(
        f"load average while it ran: {os.getloadavg()[0]:.2f} (1 min), {os.getloadavg()[1]:.2f} (5 min) "
        f"on {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
