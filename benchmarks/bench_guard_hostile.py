"""The guard under hostile load: what it holds, what it costs, and whether honest clients still
get answers. Prints numbers only; there are no assertions.

Three processes on 127.0.0.1: the guard; behind it an engine served as SGLang serves (FastAPI on
uvicorn with httptools and uvloop, behind SGLang's own key middleware: tests/recording_engine.py);
and this process as the attackers plus one honest client that opens a new connection per request.
Memory figures are the guard process's resident set.

  slowloris   N connections send a request head a line at a time, one line every 10 s, never
              finishing it (the guard drops them at its head timeout, 60 s)
  no-reader   N connections each pipeline 8 requests for a 1 MiB answer and never read (the
              guard drops them at its write timeout, 60 s)

For each: connections the guard holds, its memory per connection, the honest client's latency
(median and worst of the requests sent during the attack) and when the guard let go.
Usage: python benchmarks/bench_guard_hostile.py [--connections 1000] [--observe 75]
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "bench-hostile-key-0123456789"

ENGINE = """
import sys, time
sys.path[:0] = [{root!r}, {tests!r}]
from recording_engine import RecordingEngine
engine = RecordingEngine("httptools", {engine_key!r}, {engine_admin_key!r})
with open({port_file!r} + ".tmp", "w") as f:
    f.write(str(engine.port))
import os; os.replace({port_file!r} + ".tmp", {port_file!r})
while True:
    engine.journal.clear()   # the journal would grow with every honest request
    time.sleep(1)
"""

GUARD = """
import json, os, sys, time
sys.path[:0] = [{root!r}]
from launcher.credentials import EngineKeys
from launcher.guard import Guard
keys = EngineKeys({engine_key!r}, {engine_admin_key!r})
guard = Guard("127.0.0.1", 0, "127.0.0.1", {engine_port}, api_key={key!r}, engine_keys=keys, log=lambda m: None)
guard.start()
def rss_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
while True:
    with open({stats!r} + ".tmp", "w") as f:
        json.dump({{"port": guard.port, "connections": len(guard._connections),
                   "cap": guard.max_connections, "rss_kib": rss_kib()}}, f)
    os.replace({stats!r} + ".tmp", {stats!r})
    time.sleep(0.2)
"""


def wait_for_file(path, what):
    deadline = time.monotonic() + 30
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not start")
        time.sleep(0.1)


class Server:
    """The engine and the guard, each in a process of its own, so that the guard's memory is its own."""

    def __init__(self):
        engine_key, engine_admin_key = "e" * 64, "a" * 64
        port_file = tempfile.mktemp(prefix="engine-port-")
        self.engine = subprocess.Popen([sys.executable, "-c", ENGINE.format(
            root=str(ROOT), tests=str(ROOT / "tests"), engine_key=engine_key,
            engine_admin_key=engine_admin_key, port_file=port_file)])
        wait_for_file(port_file, "the engine")
        self.stats_path = tempfile.mktemp(prefix="guard-stats-")
        self.process = subprocess.Popen([sys.executable, "-c", GUARD.format(
            root=str(ROOT), engine_key=engine_key, engine_admin_key=engine_admin_key,
            engine_port=int(Path(port_file).read_text()), key=API_KEY, stats=self.stats_path)])
        wait_for_file(self.stats_path, "the guard")
        self.port = self.stats()["port"]

    def stats(self):
        with open(self.stats_path) as f:
            return json.load(f)

    def stop(self):
        for process in (self.process, self.engine):
            process.kill()
            process.wait()


def honest_latencies(port, count, pause=0.1):
    latencies, failures = [], 0
    for _ in range(count):
        started = time.perf_counter()
        try:
            response = requests.get(f"http://127.0.0.1:{port}/v1/models", timeout=10,
                                    headers={"Authorization": f"Bearer {API_KEY}", "Connection": "close"})
            if response.status_code != 200:
                failures += 1
        except requests.RequestException:
            failures += 1
        latencies.append((time.perf_counter() - started) * 1000)
        time.sleep(pause)
    return latencies, failures


def describe(name, latencies, failures):
    return (f"{name}: honest requests {len(latencies)}, failed {failures}, latency median "
            f"{statistics.median(latencies):.1f} ms, worst {max(latencies):.1f} ms")


def slowloris(server, count, stop):
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n")
        sockets.append(sock)

    def trickle():
        line = 0
        while not stop.wait(10):
            line += 1
            for sock in sockets:
                try:
                    sock.sendall(b"X-Slow-%d: a\r\n" % line)
                except OSError:
                    pass
    threading.Thread(target=trickle, daemon=True).start()
    return sockets


def no_reader(server, count, stop):
    sockets = []
    request = (b"GET /big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + API_KEY.encode() + b"\r\n\r\n") * 8
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(request)
        sockets.append(sock)
    return sockets


def attack(name, start, count, observe_s):
    server = Server()
    try:
        time.sleep(0.5)
        idle = server.stats()
        base, base_failures = honest_latencies(server.port, 20)
        print(describe(f"{name} before", base, base_failures))
        stop = threading.Event()
        started = time.monotonic()
        sockets = start(server, count, stop)
        time.sleep(3)
        held = server.stats()
        per_connection = (held["rss_kib"] - idle["rss_kib"]) / max(1, held["connections"])
        print(f"{name}: {count} attacking connections opened in {time.monotonic() - started:.1f} s; "
              f"the guard holds {held['connections']} (cap {held['cap']}), RSS {idle['rss_kib'] / 1024:.0f} -> "
              f"{held['rss_kib'] / 1024:.0f} MiB, about {per_connection:.0f} KiB per connection")
        during, failures = honest_latencies(server.port, 50)
        print(describe(f"{name} during", during, failures))
        released_at, peak = None, held["rss_kib"]
        while time.monotonic() - started < observe_s:
            stats = server.stats()
            peak = max(peak, stats["rss_kib"])
            if stats["connections"] == 0:
                released_at = time.monotonic() - started
                break
            time.sleep(0.5)
        final = server.stats()
        print(f"{name}: " + (f"all attacking connections dropped by the guard after {released_at:.0f} s"
                             if released_at else f"still {final['connections']} held after {observe_s} s")
              + f"; peak RSS {peak / 1024:.0f} MiB (about {(peak - idle['rss_kib']) / count:.0f} KiB per "
              f"connection), {final['rss_kib'] / 1024:.0f} MiB after")
        stop.set()
        for sock in sockets:
            sock.close()
    finally:
        server.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--observe", type=float, default=75.0,
                        help="seconds to wait for the guard to drop the attackers")
    args = parser.parse_args()
    print(f"guard hostile-load benchmark, {args.connections} connections per attack, python {sys.version.split()[0]}")
    attack("slowloris", slowloris, args.connections, args.observe)
    attack("no-reader", no_reader, args.connections, args.observe)


if __name__ == "__main__":
    main()
