"""SGLang CPU STAND-IN: Prometheus metrics with SGLang's names (not the real engine, no model).

Counts of the stand-in's placeholder requests, rendered as the text /metrics serves
(mounted by standin_http when --enable-metrics is set).
"""

import threading
from typing import Any, Dict, List

TTFT_BUCKETS = [0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400]
E2E_BUCKETS = [0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400,
               600, 1200, 1800, 2400]


class _Histogram:
    def __init__(self, buckets):
        self.buckets = list(buckets)
        self.counts: Dict[str, List[int]] = {}
        self.sums: Dict[str, float] = {}

    def observe(self, key: str, value: float):
        counts = self.counts.setdefault(key, [0] * (len(self.buckets) + 1))
        for i, b in enumerate(self.buckets):
            if value <= b:
                counts[i] += 1
        counts[-1] += 1
        self.sums[key] = self.sums.get(key, 0.0) + value


def _fmt_labels(labels: Dict[str, Any]) -> str:
    def esc(v):
        return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in sorted(labels.items())) + "}"


def _fmt_num(v: float) -> str:
    return repr(float(v))


class Metrics:
    def __init__(self, model_name: str, engine_type: str, extra_labels):
        self.lock = threading.Lock()
        self.base = {"model_name": model_name, "engine_type": engine_type}
        if isinstance(extra_labels, dict):
            self.base.update({str(k): str(v) for k, v in extra_labels.items()})
        self.prompt_tokens = {"true": 0, "false": 0}
        self.generation_tokens = {"true": 0, "false": 0}
        self.num_requests = {"true": 0, "false": 0}
        self.running = 0
        self.ttft = _Histogram(TTFT_BUCKETS)
        self.e2e = _Histogram(E2E_BUCKETS)
        self.last_gen_throughput = 0.0

    def start(self):
        with self.lock:
            self.running += 1

    def finish(self, streaming: bool, prompt_tokens: int, completion_tokens: int,
               ttft: float, e2e: float):
        key = "true" if streaming else "false"
        with self.lock:
            self.running -= 1
            self.prompt_tokens[key] += prompt_tokens
            self.generation_tokens[key] += completion_tokens
            self.num_requests[key] += 1
            self.ttft.observe(key, ttft)
            self.e2e.observe(key, e2e)
            if e2e > 0:
                self.last_gen_throughput = completion_tokens / e2e

    def abort(self):
        with self.lock:
            self.running -= 1

    def render(self) -> str:
        sched = dict(self.base, tp_rank="0", pp_rank="0", moe_ep_rank="0")
        out = ["# SGLang CPU STAND-IN metrics (not the real engine, no model): "
               "counts of the stand-in's placeholder requests"]
        with self.lock:
            def gauge(name, value, labels=sched):
                out.append(f"# HELP {name} Multiprocess metric")
                out.append(f"# TYPE {name} gauge")
                out.append(f"{name}{_fmt_labels(labels)} {_fmt_num(value)}")

            def counter(name, values):
                family = name[: -len("_total")]
                out.append(f"# HELP {family} Multiprocess metric")
                out.append(f"# TYPE {family} counter")
                for key in ("false", "true"):
                    out.append(f"{name}{_fmt_labels(dict(self.base, is_streaming=key))} "
                               f"{_fmt_num(values[key])}")

            def histogram(name, h):
                out.append(f"# HELP {name} Multiprocess metric")
                out.append(f"# TYPE {name} histogram")
                for key in ("false", "true"):
                    counts = h.counts.get(key, [0] * (len(h.buckets) + 1))
                    labels = dict(self.base, is_streaming=key)
                    for b, c in zip(h.buckets, counts):
                        out.append(f"{name}_bucket{_fmt_labels(dict(labels, le=_fmt_num(b)))} {_fmt_num(c)}")
                    out.append(f"{name}_bucket{_fmt_labels(dict(labels, le='+Inf'))} {_fmt_num(counts[-1])}")
                    out.append(f"{name}_count{_fmt_labels(labels)} {_fmt_num(counts[-1])}")
                    out.append(f"{name}_sum{_fmt_labels(labels)} {_fmt_num(h.sums.get(key, 0.0))}")

            gauge("sglang:num_running_reqs", self.running)
            gauge("sglang:num_queue_reqs", 0)
            gauge("sglang:gen_throughput", self.last_gen_throughput)
            gauge("sglang:cache_hit_rate", 0)
            gauge("sglang:token_usage", 0)
            counter("sglang:prompt_tokens_total", self.prompt_tokens)
            counter("sglang:generation_tokens_total", self.generation_tokens)
            counter("sglang:num_requests_total", self.num_requests)
            histogram("sglang:time_to_first_token_seconds", self.ttft)
            histogram("sglang:e2e_request_latency_seconds", self.e2e)
        return "\n".join(out) + "\n"
