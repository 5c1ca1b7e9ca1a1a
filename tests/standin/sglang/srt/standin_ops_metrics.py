"""SGLang CPU STAND-IN: the metric families that the bundle's monitoring (monitoring/queries.yaml)
reads, beyond standin_metrics' counts. Not the real engine, no model.

Names, label sets and buckets are SGLang 0.5.23's, from
sglang/srt/observability/metrics_collector.py: num_running_reqs :365, num_queue_reqs :371,
token_usage :405, spec_accept_length :512, spec_accept_rate :518, the inter-token buckets :2014-2038,
inter_token_latency_seconds :2051 (no is_streaming label), request_time_per_output_token_seconds
:2058 (with is_streaming).

Every series, these and standin_metrics', carries the label standin="cpu-stand-in", so a
Prometheus or a dashboard fed by the stand-in says so on every number.

The values are a model of placeholder requests, not measurements of an engine:
- the stand-in serves every request at once; it reports at most --max-running-requests of them as
  running and the rest as queued, as SGLang's scheduler would hold them back;
- it has no KV cache; token_usage is the running share of --max-running-requests, so that the
  gauge moves with load (and a KV-cache alert can be exercised with a small limit);
- inter-token latency is the stand-in's even spacing of tokens, (e2e - ttft) / (tokens - 1),
  observed once per token gap; per-request TPOT the same quotient, once per request;
- under --speculative-algorithm, a fixed acceptance rate of 0.5 of the draft tokens per round
  (SGLang's definitions, scheduler_components/metrics_reporter.py:967-985); 0 without, as SGLang.
"""

import threading
from typing import Dict, List, Tuple

from sglang.srt.standin_metrics import Metrics, _fmt_labels, _fmt_num

STANDIN_LABEL = ("standin", "cpu-stand-in")
STANDIN_ACCEPT_RATE = 0.5

# metrics_collector.py:2014-2038 (bucket_inter_token_latency), for both ITL and TPOT.
INTER_TOKEN_BUCKETS = [0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.020, 0.025, 0.030, 0.035, 0.040,
                       0.060, 0.080, 0.100, 0.200, 0.400, 0.600, 0.800, 1.000, 2.000, 4.000, 6.000,
                       8.000]
# standin_metrics renders these with values of its own; this module renders them instead.
REPLACED_FAMILIES = ("sglang:num_running_reqs", "sglang:num_queue_reqs", "sglang:token_usage")


class _WeightedHistogram:
    """A Prometheus histogram keyed by a label tuple, observed with a weight (count of events)."""

    def __init__(self, buckets: List[float]):
        self.buckets = list(buckets)
        self.series: Dict[Tuple[Tuple[str, str], ...], List[float]] = {}

    def observe(self, labels: Dict[str, str], value: float, weight: int = 1):
        key = tuple(sorted(labels.items()))
        # per bucket (cumulative), then +Inf count, then sum
        state = self.series.setdefault(key, [0] * (len(self.buckets) + 1) + [0.0])
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                state[i] += weight
        state[-2] += weight
        state[-1] += value * weight

    def lines(self, name: str) -> List[str]:
        out = [f"# HELP {name} Multiprocess metric", f"# TYPE {name} histogram"]
        for key, state in sorted(self.series.items()):
            labels = dict(key)
            for bound, count in zip(self.buckets, state):
                out.append(f"{name}_bucket{_fmt_labels(dict(labels, le=_fmt_num(bound)))} {_fmt_num(count)}")
            out.append(f"{name}_bucket{_fmt_labels(dict(labels, le='+Inf'))} {_fmt_num(state[-2])}")
            out.append(f"{name}_count{_fmt_labels(labels)} {_fmt_num(state[-2])}")
            out.append(f"{name}_sum{_fmt_labels(labels)} {_fmt_num(state[-1])}")
        return out


def _spec_draft_tokens_per_round(server_args) -> int:
    """SGLang's draft_per_round: num_draft_tokens - 1, else num_steps (metrics_reporter.py:975-978)."""
    draft_tokens = getattr(server_args, "speculative_num_draft_tokens", None)
    if draft_tokens:
        return int(draft_tokens) - 1
    return int(getattr(server_args, "speculative_num_steps", None) or 0)


class OpsMetrics(Metrics):
    """standin_metrics.Metrics plus queue, KV usage, ITL, TPOT and speculative acceptance."""

    def __init__(self, model_name: str, engine_type: str, extra_labels, *, server_args,
                 max_running_requests: int):
        labels = dict(extra_labels) if isinstance(extra_labels, dict) else {}
        labels[STANDIN_LABEL[0]] = STANDIN_LABEL[1]
        super().__init__(model_name, engine_type, labels)
        self.max_running_requests = max(1, int(max_running_requests))
        self.speculative = bool(getattr(server_args, "speculative_algorithm", None))
        self.draft_per_round = _spec_draft_tokens_per_round(server_args) if self.speculative else 0
        self.itl = _WeightedHistogram(INTER_TOKEN_BUCKETS)
        self.tpot = _WeightedHistogram(INTER_TOKEN_BUCKETS)
        self.ops_lock = threading.Lock()

    def finish(self, streaming: bool, prompt_tokens: int, completion_tokens: int,
               ttft: float, e2e: float):
        super().finish(streaming, prompt_tokens, completion_tokens, ttft, e2e)
        if completion_tokens < 2:
            return
        gap = max(0.0, e2e - ttft) / (completion_tokens - 1)
        with self.ops_lock:
            self.itl.observe(self.base, gap, weight=completion_tokens - 1)
            self.tpot.observe(dict(self.base, is_streaming="true" if streaming else "false"), gap)

    def render(self) -> str:
        kept = [line for line in super().render().splitlines() if not _in_families(line, REPLACED_FAMILIES)]
        sched = dict(self.base, tp_rank="0", pp_rank="0", moe_ep_rank="0")
        running = min(self.running, self.max_running_requests)
        accept_rate = STANDIN_ACCEPT_RATE if self.speculative else 0.0
        gauges = (
            ("sglang:num_running_reqs", running),
            ("sglang:num_queue_reqs", max(0, self.running - self.max_running_requests)),
            ("sglang:token_usage", running / self.max_running_requests),
            ("sglang:spec_accept_length", 1 + accept_rate * self.draft_per_round if self.speculative else 0.0),
            ("sglang:spec_accept_rate", accept_rate),
        )
        out = kept
        for name, value in gauges:
            out += [f"# HELP {name} Multiprocess metric", f"# TYPE {name} gauge",
                    f"{name}{_fmt_labels(sched)} {_fmt_num(value)}"]
        with self.ops_lock:
            out += self.itl.lines("sglang:inter_token_latency_seconds")
            out += self.tpot.lines("sglang:request_time_per_output_token_seconds")
        return "\n".join(out) + "\n"


def _in_families(line: str, families) -> bool:
    for name in families:
        if line.startswith((name + "{", name + " ", f"# HELP {name} ", f"# TYPE {name} ")):
            return True
    return False
