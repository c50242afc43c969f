"""Load test of ``torchdiffusion serve``: N concurrent generate requests against localhost.

Starts the server in a subprocess (a tiny random model unless --checkpoint is given), fires
``--requests`` generate calls at once through Gradio's Python client, and meanwhile loads the
page every 0.5 s and samples the server's resident memory (/proc/PID/status). Prints one
table: answered requests, wall time, page-load latency (median / max) while loaded, server
RSS before / peak (VmHWM) / after.

    .venv/bin/python benchmarks/ui_load.py --requests 20 --steps 10
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="model folder (default: a tiny random model)")
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--port", type=int, default=7877)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    import httpx
    from gradio_client import Client

    tmp = Path(tempfile.mkdtemp(prefix="td-ui-load-"))
    ckpt = args.checkpoint
    if ckpt is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from test_ui import make_models

        ckpt = str(make_models(tmp / "models") / "tiny")
    server = subprocess.Popen([sys.executable, "-m", "torchdiffusion.cli", "serve", "--checkpoint", ckpt,
                               "--port", str(args.port), "--outputs", str(tmp / "outputs"),
                               "--threads", str(args.threads)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{args.port}/"
    try:
        for _ in range(240):
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            print("server did not start:", server.stderr.read().decode()[-2000:])
            return 1
        rss0 = rss_mb(server.pid)
        client = Client(url, verbose=False)
        info = client.view_api(return_format="dict", print_info=False)
        model = next(iter(info["named_endpoints"]["/generate"]["parameters"]))["parameter_default"]
        latencies, rss, done = [], [], threading.Event()

        def probe():
            while not done.is_set():
                t = time.perf_counter()
                httpx.get(url, timeout=60)
                latencies.append(time.perf_counter() - t)
                rss.append(rss_mb(server.pid))
                time.sleep(0.5)

        def one(i):
            c = Client(url, verbose=False)
            out = c.predict(model, "", "", None, "DPM++ 2M Karras", args.steps, 2.0, i, args.batch,
                            api_name="/generate")
            return "done" in out[1], out[1]

        prober = threading.Thread(target=probe)
        prober.start()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.requests) as pool:
            results = list(pool.map(one, range(args.requests)))
        wall = time.perf_counter() - t0
        done.set()
        prober.join()
        ok = sum(r[0] for r in results)
        print(f"| requests | answered | steps × batch | wall s | s/request | page load median / max s | "
              f"server RSS MB start / peak sampled / VmHWM / end |")
        print("|---|---|---|---|---|---|---|")
        print(f"| {args.requests} | {ok} | {args.steps} × {args.batch} | {wall:.1f} | {wall / args.requests:.2f} | "
              f"{statistics.median(latencies):.3f} / {max(latencies):.3f} | {rss0:.0f} / {max(rss):.0f} / "
              f"{rss_mb(server.pid, 'VmHWM'):.0f} / {rss_mb(server.pid):.0f} |")
        for good, msg in results:
            if not good:
                print("failed:", msg[:200])
        return 0 if ok == args.requests else 1
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    sys.exit(main())
