"""Load test of the Space on loopback (a script, not a test): memory stays flat, disk is swept, nothing fails.

    python benchmarks/app_load.py                                 # starts app.py here: 100 sequential + 40 concurrent
    python benchmarks/app_load.py --sequential 500 --concurrent 200 --callers 8 --json outputs/app_load.json
    python benchmarks/app_load.py --url http://127.0.0.1:7860/ --pid 1234 --cache-dir /tmp/gradio

Phases: a warm-up (sequential, then one concurrent burst), then `--sequential` requests one after another, then `--concurrent` requests from `--callers`
threads at once. Half of each phase repeats one identical request (same photo, references and options: the case
that used to share a half-written cached file), the other half cycles through distinct photos, references and
upscale factors. Every answer is checked (a PNG of the expected size). A sampler thread reads the server's resident
memory (psutil: the app process and its children) and the size of Gradio's cache folder every 0.5 s.

Reported: answered / failed calls, latency spread per phase, RSS after warm-up, peak and final, cache-folder bytes
and files (peak and final), and the server log's lines for user errors (each one line, no traceback). Exit 1 when a
call failed, when the final RSS is more than `--rss-tolerance` above the post-warm-up RSS, or when the log holds a
traceback.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(workdir: Path, env_extra: dict) -> tuple[subprocess.Popen, str]:
    """app.py on a free loopback port with its Gradio cache in `workdir/gradio`; returns once it answers."""
    port = free_port()
    env = {
        **os.environ,
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_OFFLINE": "1",
        "PSP_CACHE_EXAMPLES": "0",
        "GRADIO_TEMP_DIR": str(workdir / "gradio"),
        **env_extra,
    }
    with open(workdir / "app.log", "w") as log:  # the child keeps its own copy of the file descriptor
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "app.py")], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}/"
    for _ in range(600):
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
    return sum(q.memory_info().rss for q in [p, *p.children(recursive=True)]) / 2**20


def folder_usage(folder: Path | None) -> tuple[int, int]:
    """(bytes, files) under a folder; (0, 0) when it is missing."""
    if folder is None or not folder.is_dir():
        return 0, 0
    sizes = [f.stat().st_size for f in folder.rglob("*") if f.is_file()]
    return sum(sizes), len(sizes)


class Sampler(threading.Thread):
    """Reads RSS and cache-folder usage every `every` seconds until stopped; keeps the peaks."""

    def __init__(self, pid: int | None, cache: Path | None, every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pid, self.cache, self.every = pid, cache, every
        self.peak_rss = self.peak_bytes = self.peak_files = 0.0
        self._stop_event = threading.Event()

    def sample(self) -> tuple[float, int, int]:
        rss = rss_mb(self.pid) if self.pid else 0.0
        used, files = folder_usage(self.cache)
        self.peak_rss, self.peak_bytes = max(self.peak_rss, rss), max(self.peak_bytes, used)
        self.peak_files = max(self.peak_files, files)
        return rss, used, files

    def run(self) -> None:
        while not self._stop_event.wait(self.every):
            try:
                self.sample()
            except (OSError, FileNotFoundError):
                pass  # a file swept while being measured

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def request_mix(samples: Path, upscale: float) -> tuple[dict, list[dict]]:
    """One identical request, and distinct ones (other photos, references, upscale factors) to cycle through."""
    people = {p.name: sorted(p.glob("*.jpg")) for p in sorted((samples / "references").iterdir()) if p.is_dir()}
    same = {"photo": people["celeba_7222"][-1], "refs": people["celeba_7222"][:3], "upscale": upscale}
    distinct = []
    for files in people.values():
        for i, photo in enumerate(files):
            refs = [f for f in files if f != photo][: 1 + i % 4]
            distinct.append({"photo": photo, "refs": refs, "upscale": (1.0, 2.0, 1.5)[i % 3]})
    for photo in sorted((samples / "photos" / "whole").glob("*")):
        distinct.append({"photo": photo, "refs": people["celeba_7222"][:2], "upscale": 1.0})
    return same, distinct


def call(client, req: dict) -> float:
    """One /restore call; checks the PNG's size. Returns the latency in seconds."""
    from gradio_client import handle_file

    from psp_hub.common.imageio import load_image

    t0 = time.perf_counter()
    out = client.predict(
        handle_file(str(req["photo"])),
        [handle_file(str(r)) for r in req["refs"]],
        "all",
        req["upscale"],
        1.0,
        True,
        "best",
        False,
        False,
        api_name="/restore",
    )
    h, w = req["size"]
    expected = (round(h * req["upscale"]), round(w * req["upscale"]), 3)
    shape = load_image(out[1]).shape
    if shape != expected:
        raise AssertionError(f"{req['photo'].name}: output {shape}, expected {expected}")
    return time.perf_counter() - t0


def run_phase(url: str, tmp: Path, requests: list[dict], callers: int) -> dict:
    """Send `requests` with `callers` threads (1 = sequential); each thread has its own client."""
    from gradio_client import Client

    local = threading.local()
    latencies, failures = [], []

    def one(i_req) -> None:
        i, req = i_req
        if not hasattr(local, "client"):
            local.client = Client(
                url, verbose=False, analytics_enabled=False, download_files=str(tmp / f"dl{threading.get_ident()}")
            )
        try:
            latencies.append(call(local.client, req))
        except Exception as exc:  # noqa: BLE001 - a load test counts every kind of failure
            failures.append(f"request {i}: {type(exc).__name__}: {exc}"[:300])

    t0 = time.perf_counter()
    with ThreadPoolExecutor(callers) as pool:
        list(pool.map(one, enumerate(requests)))
    wall = time.perf_counter() - t0
    done = sorted(latencies)
    q = statistics.quantiles(done, n=10, method="inclusive") if len(done) >= 2 else [float("nan")] * 9
    return {
        "requests": len(requests),
        "callers": callers,
        "answered_ok": len(done),
        "failed": len(failures),
        "failures": failures[:10],
        "wall_s": round(wall, 1),
        "throughput_per_s": round(len(done) / wall, 3),
        "latency_s": {
            "min": round(done[0], 2),
            "p50": round(statistics.median(done), 2),
            "p90": round(q[8], 2),
            "max": round(done[-1], 2),
        }
        if done
        else None,
    }


def user_error_lines(url: str, tmp: Path, log: Path | None) -> dict:
    """Two user mistakes (a text file as photo, a photo without a face): how the server log records them."""
    from gradio_client import Client, handle_file
    from PIL import Image

    (tmp / "notes.png").write_text("not a photo")
    Image.new("RGB", (300, 200), (120, 130, 140)).save(tmp / "wall.jpg")
    client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
    answers = []
    for name in ("notes.png", "wall.jpg"):
        try:
            answers.append(client.predict(handle_file(str(tmp / name)), api_name="/restore"))
        except Exception as exc:  # noqa: BLE001 - the error is expected; the log is what is measured
            answers.append(type(exc).__name__)
    text = log.read_text() if log and log.is_file() else ""
    return {
        "refused_lines": [line for line in text.splitlines() if "refused:" in line][-2:],
        "tracebacks": text.count("Traceback"),
    }


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default=None, help="a running app (default: start app.py here, on loopback)")
    ap.add_argument("--pid", type=int, default=None, help="the running app's process id, for its memory")
    ap.add_argument("--cache-dir", type=Path, default=None, help="the running app's GRADIO_TEMP_DIR, for disk use")
    ap.add_argument("--log", type=Path, default=None, help="the running app's log, for its user-error lines")
    ap.add_argument("--model", default=None, help="PSP_MODEL for the started app (default: its own choice)")
    ap.add_argument("--delete-after", type=int, default=60, help="PSP_DELETE_AFTER (s) for the started app")
    ap.add_argument("--warmup", type=int, default=6)
    ap.add_argument("--sequential", type=int, default=100)
    ap.add_argument("--concurrent", type=int, default=40)
    ap.add_argument("--callers", type=int, default=8, help="threads sending the concurrent phase")
    ap.add_argument("--upscale", type=float, default=2.0)
    ap.add_argument("--rss-tolerance", type=float, default=0.10)
    ap.add_argument("--settle", action="store_true", help="at the end, wait past the deletion age and measure again")
    ap.add_argument("--json", type=Path, default=None)
    return ap.parse_args(argv)


def phase_requests(n: int, same: dict, distinct: list[dict]) -> list[dict]:
    """n requests: even positions the identical one, odd positions the distinct ones in turn."""
    cycle = itertools.cycle(distinct)
    return [same if i % 2 == 0 else next(cycle) for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from psp_hub.common.imageio import load_image
    from psp_hub.common.paths import samples_dir

    same, distinct = request_mix(samples_dir(), args.upscale)
    for req in [same, *distinct]:
        req["size"] = load_image(req["photo"]).shape[:2]
    tmp = Path(tempfile.mkdtemp(prefix="psp-load-"))
    proc, log = None, None
    if args.url:
        url, pid, cache, log = args.url, args.pid, args.cache_dir, args.log
    else:
        env = {"PSP_DELETE_AFTER": str(args.delete_after), **({"PSP_MODEL": args.model} if args.model else {})}
        proc, url = start_app(tmp, env)
        pid, cache, log = proc.pid, tmp / "gradio", tmp / "app.log"
    try:
        result = measure(args, url, pid, cache, log, tmp, same, distinct)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1


def measure(args, url, pid, cache, log, tmp, same, distinct) -> dict:
    """The phases with the sampler running; the figures and the verdict."""
    sampler = Sampler(pid, cache)
    start_rss = sampler.sample()[0]
    warm = run_phase(url, tmp, phase_requests(args.warmup, same, distinct), 1)
    warm_burst = run_phase(url, tmp, phase_requests(2 * args.callers, same, distinct), args.callers)  # its threads too
    warm_rss, *_ = sampler.sample()
    sampler.start()
    seq = run_phase(url, tmp, phase_requests(args.sequential, same, distinct), 1)
    seq_rss = sampler.sample()[0]
    conc = run_phase(url, tmp, phase_requests(args.concurrent, same, distinct), args.callers)
    errors = user_error_lines(url, tmp, log)
    time.sleep(2)  # let the last responses' buffers go
    final_rss, final_bytes, final_files = sampler.sample()
    settled = None
    if args.settle:  # idle past the deletion age and one sweep: what is left on disk
        time.sleep(args.delete_after + max(5, args.delete_after // 6) + 5)
        rss, used, files = sampler.sample()
        settled = {"rss_mb": round(rss), "cache_mb": round(used / 2**20, 1), "cache_files": files}
    sampler.stop()
    growth = final_rss / warm_rss - 1 if warm_rss else 0.0
    failed = warm["failed"] + warm_burst["failed"] + seq["failed"] + conc["failed"]
    return {
        "url": url,
        "warmup": warm,
        "warmup_concurrent": warm_burst,
        "sequential": seq,
        "concurrent": conc,
        "rss_mb": {
            "start": round(start_rss),
            "after_warmup": round(warm_rss),
            "after_sequential": round(seq_rss),
            "peak": round(sampler.peak_rss),
            "final": round(final_rss),
            "growth_after_warmup": round(growth, 3),
        },
        "cache_folder": {
            "path": str(cache),
            "peak_mb": round(sampler.peak_bytes / 2**20, 1),
            "final_mb": round(final_bytes / 2**20, 1),
            "peak_files": int(sampler.peak_files),
            "final_files": final_files,
            "delete_after_s": args.delete_after if not args.url else None,
        },
        "after_idle_past_delete_age": settled,
        "user_errors": errors,
        "ok": failed == 0 and growth <= args.rss_tolerance and errors["tracebacks"] == 0,
    }


if __name__ == "__main__":
    sys.exit(main())
