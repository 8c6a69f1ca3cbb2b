"""Load test of the Space: N concurrent gradio_client callers against the running app (a script, not a test).

    python benchmarks/app_load.py                     # starts app.py on a free loopback port, 20 callers
    python benchmarks/app_load.py --url http://127.0.0.1:7860/ --pid 1234 --callers 20

Every caller restores the same photo with 3 references through the named endpoint `/restore`; each answer is
checked (a PNG of the expected size). Reported: answered / failed calls, latency spread, and the server's
resident memory before and after (psutil, the app process and its children).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(workdir: Path, env_extra: dict) -> tuple[subprocess.Popen, str]:
    """app.py on a free loopback port; returns once it answers."""
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1",
           "PSP_CACHE_EXAMPLES": "0", **env_extra}
    log = open(workdir / "app.log", "w")
    proc = subprocess.Popen([sys.executable, str(REPO / "app.py")], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError((workdir / "app.log").read_text()[-2000:])
        try:
            with urllib.request.urlopen(url, timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the app did not start")


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MB."""
    import psutil

    p = psutil.Process(pid)
    return round(sum(q.memory_info().rss for q in [p, *p.children(recursive=True)]) / 2**20, 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default=None, help="a running app (default: start app.py here)")
    ap.add_argument("--pid", type=int, default=None, help="the running app's process id, for its memory")
    ap.add_argument("--model", default=None, help="PSP_MODEL for the started app (default: its own choice)")
    ap.add_argument("--callers", type=int, default=20)
    ap.add_argument("--photo", type=Path, default=None)
    ap.add_argument("--upscale", type=float, default=2.0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    from gradio_client import Client, handle_file

    from psp_hub.imageio import load_image
    from psp_hub.paths import samples_dir

    photo = args.photo or samples_dir() / "references" / "celeba_7222" / "010582.jpg"
    refs = sorted((samples_dir() / "references" / "celeba_7222").glob("*.jpg"))[:3]
    h, w = load_image(photo).shape[:2]
    expected = (round(h * args.upscale), round(w * args.upscale), 3)

    tmp = Path(tempfile.mkdtemp(prefix="psp-load-"))
    proc = None
    if args.url:
        url, pid = args.url, args.pid
    else:
        proc, url = start_app(tmp, {"PSP_MODEL": args.model} if args.model else {})
        pid = proc.pid
    try:
        mem_before = rss_mb(pid) if pid else None
        clients = [Client(url, verbose=False, analytics_enabled=False, download_files=str(tmp / f"c{i}"))
                   for i in range(args.callers)]
        latencies, failures = [None] * args.callers, []
        barrier = threading.Barrier(args.callers)

        def call(i: int) -> None:
            barrier.wait()
            t0 = time.perf_counter()
            try:
                out = clients[i].predict(handle_file(str(photo)), [handle_file(str(r)) for r in refs], "all",
                                         args.upscale, 1.0, True, "best", False, False, api_name="/restore")
                shape = load_image(out[1]).shape
                if shape != expected:
                    raise AssertionError(f"output {shape}, expected {expected}")
                if not out[5]["faces"] or len(out[5]["faces"][0]["references_used"]) != 3:
                    raise AssertionError("the face was not restored with the 3 references")
                latencies[i] = time.perf_counter() - t0
            except Exception as exc:  # noqa: BLE001 - a load test counts every kind of failure
                failures.append(f"caller {i}: {type(exc).__name__}: {exc}")

        t0 = time.perf_counter()
        threads = [threading.Thread(target=call, args=(i,)) for i in range(args.callers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        mem_after = rss_mb(pid) if pid else None
        done = sorted(x for x in latencies if x is not None)
        q = statistics.quantiles(done, n=10) if len(done) >= 2 else [float("nan")] * 9
        result = {
            "url": url, "callers": args.callers, "answered_ok": len(done), "failed": len(failures), "failures": failures,
            "latency_s": {"min": round(done[0], 2), "p50": round(statistics.median(done), 2), "p90": round(q[8], 2),
                          "max": round(done[-1], 2)} if done else None,
            "wall_s": round(wall, 2), "throughput_per_s": round(len(done) / wall, 3),
            "server_rss_mb_before": mem_before, "server_rss_mb_after": mem_after,
            "photo": f"{photo.name} {w}x{h}, 3 references, upscale {args.upscale}",
        }
        print(json.dumps(result, indent=2))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        return 0 if not failures else 1
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    sys.exit(main())
