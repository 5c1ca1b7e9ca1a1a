"""What the API-key guard costs: requests/s and latency through guard.py versus straight to the engine.

Three processes on 127.0.0.1, so that the client threads, the guard and the engine do not share a
GIL: a minimal asyncio stand-in engine (fast, so that the guard's cost shows), the guard (with an
API key, so that the auth check is included), and this process as a threaded keep-alive client.

Two workloads:
  json  POST of a small JSON body, small JSON answer with Content-Length
  sse   a chunked text/event-stream of N events (default 256), one send per event

Usage: python benchmarks/bench_guard.py [--requests 4000] [--sse-requests 400] [--threads 1,8]
Prints numbers only; there are no assertions.
"""
import argparse
import asyncio
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "bench-key-0123456789"
REQUEST_BODY = json.dumps({"model": "llama", "messages": [{"role": "user", "content": "Hi"}],
                           "max_tokens": 16}).encode()
ANSWER = json.dumps({"id": "cmpl-1", "object": "chat.completion", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "Hello there, how can I help?"},
     "finish_reason": "stop"}], "usage": {"prompt_tokens": 9, "completion_tokens": 8}}).encode()
EVENT = (b'data: {"id":"cmpl-1","object":"chat.completion.chunk","choices":[{"index":0,'
         b'"delta":{"content":"tok%05d"}}]}\n\n')


# --- the stand-in engine (its own process) ---------------------------------------------------

async def engine_connection(reader, writer, events):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await reader.readexactly(length)
            if b" /sse" in head.split(b"\r\n", 1)[0]:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n")
                for i in range(events):
                    data = EVENT % i
                    writer.write(b"%x\r\n%s\r\n" % (len(data), data))
                    await writer.drain()
                    await asyncio.sleep(0)  # one send per event, as tokens leave a real engine
                writer.write(b"0\r\n\r\n")
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def serve_engine(events):
    server = await asyncio.start_server(lambda r, w: engine_connection(r, w, events),
                                        "127.0.0.1", 0, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until parent exits


def serve_guard(engine_port):
    sys.path.insert(0, str(ROOT))
    from launcher.guard import Guard
    g = Guard("127.0.0.1", 0, "127.0.0.1", engine_port, api_key=API_KEY)
    g.start()
    print(g.port, flush=True)
    sys.stdin.read()
    g.stop()


def spawn(*args):
    child = subprocess.Popen([sys.executable, __file__, *args], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    return child, int(child.stdout.readline())


# --- the client ------------------------------------------------------------------------------

def one_json(conn, headers):
    conn.request("POST", "/v1/chat/completions", REQUEST_BODY, headers)
    response = conn.getresponse()
    body = response.read()
    assert response.status == 200 and body == ANSWER, response.status
    return None


def one_sse(conn, headers):
    started = time.perf_counter()
    conn.request("GET", "/sse", headers=headers)
    response = conn.getresponse()
    first = response.read1(65536)
    first_at = time.perf_counter() - started
    rest = response.read()
    assert response.status == 200 and first.startswith(b"data: ") and rest, response.status
    return first_at


def run_load(port, total, threads, one, headers):
    """total requests over `threads` keep-alive connections; latencies in seconds."""
    latencies, firsts, lock = [], [], threading.Lock()

    def worker(count):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine, my_firsts = [], []
        for _ in range(count):
            t0 = time.perf_counter()
            first = one(conn, headers)
            mine.append(time.perf_counter() - t0)
            if first is not None:
                my_firsts.append(first)
        conn.close()
        with lock:
            latencies.extend(mine)
            firsts.extend(my_firsts)

    for _ in range(min(threads, 4)):  # warm up connections and code paths
        worker(5)
    latencies.clear()
    firsts.clear()
    workers = [threading.Thread(target=worker, args=(total // threads,)) for _ in range(threads)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    return len(latencies) / elapsed, latencies, firsts


def cpu_seconds(pid):
    """User+system CPU time of a process (Linux /proc), or None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ms(values, q):
    if not values:
        return float("nan")
    if q == 50:
        return statistics.median(values) * 1000
    return statistics.quantiles(values, n=100)[q - 1] * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000, help="small JSON requests per run")
    parser.add_argument("--sse-requests", type=int, default=400, help="SSE streams per run")
    parser.add_argument("--events", type=int, default=256, help="events per SSE stream")
    parser.add_argument("--threads", default="1,8", help="client thread counts, comma-separated")
    parser.add_argument("--role", choices=["engine", "guard"], help=argparse.SUPPRESS)
    parser.add_argument("--engine-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "engine":
        return asyncio.run(serve_engine(args.events))
    if args.role == "guard":
        return serve_guard(args.engine_port)

    engine, engine_port = spawn("--role", "engine", "--events", str(args.events))
    guard, guard_port = spawn("--role", "guard", "--engine-port", str(engine_port))
    auth = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    try:
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, keep-alive connections, "
              f"guard with an API key")
        print(f"{'workload':<12}{'threads':>7} {'path':<8}{'req/s':>9}{'p50 ms':>9}{'p90 ms':>9}"
              f"{'p99 ms':>9}{'1st-event p50':>15}{'events/s':>11}")
        for threads in (int(t) for t in args.threads.split(",")):
            for name, one, total in (("json", one_json, args.requests),
                                     (f"sse x{args.events}", one_sse, args.sse_requests)):
                results = {}
                for path, port in (("direct", engine_port), ("guard", guard_port)):
                    cpu_before = cpu_seconds(guard.pid)
                    rate, lat, firsts = run_load(port, total, threads, one, auth)
                    cpu_after = cpu_seconds(guard.pid)
                    results[path] = (rate, lat, firsts)
                    events = f"{rate * args.events:>11.0f}" if firsts else f"{'':>11}"
                    first = f"{ms(firsts, 50):>15.2f}" if firsts else f"{'':>15}"
                    print(f"{name:<12}{threads:>7} {path:<8}{rate:>9.0f}{ms(lat, 50):>9.2f}"
                          f"{ms(lat, 90):>9.2f}{ms(lat, 99):>9.2f}{first}{events}")
                added = ms(results["guard"][1], 50) - ms(results["direct"][1], 50)
                cpu = ""
                if cpu_before is not None:  # includes the warm-up requests: an upper bound
                    cpu = f"; guard CPU {(cpu_after - cpu_before) / total * 1e6:.0f} us/request"
                print(f"{'':<20}added p50 latency through the guard: {added:.2f} ms; throughput "
                      f"{results['guard'][0] / results['direct'][0]:.0%} of direct{cpu}")
    finally:
        for child in (guard, engine):
            child.stdin.close()
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()


if __name__ == "__main__":
    main()
