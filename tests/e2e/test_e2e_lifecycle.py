"""Readiness, the flags that reach the engine, bad configuration, signals, crashes, hangs."""
import time

import pytest
import requests

from launcher import settings
from bundle import render
from stack import READY_TIMEOUT, STANDIN, wait_for


def probe(stack, path="/health"):
    try:
        return requests.get(stack.base + path, timeout=5).status_code
    except requests.RequestException:
        return None


@pytest.mark.parametrize("preset", ["basic", "throughput", "latency"])
def test_healthy_only_after_warm_up_and_the_preset_reached_the_engine(make_stack, preset):
    stack = make_stack(preset=preset, api_key=False)
    stack.up(wait=False)
    seen = []
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        health, answer = stack.health(), probe(stack)
        seen.append((health, answer))
        if health == "healthy":
            break
        time.sleep(0.2)
    assert seen[-1][0] == "healthy", seen[-10:]
    assert probe(stack) == 200
    # Docker never called it healthy while the engine still answered 503 or nothing.
    assert all(answer == 200 for health, answer in seen if health == "healthy")
    if STANDIN:
        assert any(answer in (None, 503) for _, answer in seen), "never saw the loading/warm-up phase"
    info = stack.get("/server_info").json()
    for flag, value in stack.deployment.flags.items():
        dest = flag.replace("-", "_")
        if isinstance(value, str) and dest == "speculative_algorithm":
            assert info[dest].upper() == value.upper()
        else:
            assert info[dest] == value, (flag, info[dest], value)


@pytest.mark.parametrize("environment,fragment", [
    ({"ENGINE_TP_SIZ": "4"}, "ENGINE_TP_SIZ is not a setting"),
    ({"ENGINE_MEM_FRACTION_STATIC": "most"}, "ENGINE_MEM_FRACTION_STATIC='most'"),
    ({"ENGINE_TP_SIZE": "1"}, "does not fit"),
])
def test_bad_configuration_exits_78_with_the_variable_and_is_not_restarted_in_a_loop(make_stack, environment,
                                                                                     fragment):
    stack = make_stack(environment=environment, gpu_machine="h100x1")
    stack.up(wait=False)
    wait_for(lambda: stack.inspect()["State"]["Status"] == "exited" and
             not stack.inspect()["State"]["Restarting"], 60, "the container to stay exited")
    state = stack.inspect()
    assert state["State"]["ExitCode"] == settings.EXIT_CONFIG_ERROR
    assert fragment in stack.logs()
    restarts = state["RestartCount"]
    limit = int(render.load_data()["container"]["restart"].split(":")[1])
    time.sleep(3)
    assert stack.inspect()["RestartCount"] == restarts <= limit, "restart policy keeps restarting a config error"
    assert "starting engine" not in stack.logs()


def test_sigterm_stops_within_the_grace_period(make_stack):
    stack = make_stack(api_key=False)
    stack.up()
    began = time.monotonic()
    stack.compose("stop", "--timeout", "60")
    took = time.monotonic() - began
    state = stack.inspect()["State"]
    assert state["ExitCode"] in ((0,) if STANDIN else (0, 143)) and not state["OOMKilled"], state
    assert took < 60
    assert "shutting down" in stack.logs().lower() or not STANDIN


def test_killed_engine_is_brought_back_by_the_restart_policy(make_stack):
    stack = make_stack(api_key=False)
    stack.up()
    stack.signal_engine("SIGKILL")
    wait_for(lambda: stack.inspect()["RestartCount"] >= 1, 60, "a restart")
    wait_for(lambda: stack.health() == "healthy", READY_TIMEOUT, "healthy again")
    assert probe(stack) == 200


def test_healthcheck_turns_unhealthy_when_the_engine_stops_answering(make_stack):
    stack = make_stack(api_key=False)
    stack.up()
    pid = stack.signal_engine("SIGSTOP")
    try:
        wait_for(lambda: stack.health() == "unhealthy", 60, "unhealthy")
    finally:
        stack.signal_engine("SIGCONT", pid)
    wait_for(lambda: stack.health() == "healthy", 60, "healthy after the engine resumes")


def test_public_port_answers_503_while_the_engine_loads(make_stack):
    stack = make_stack(api_key=False, environment={"STANDIN_LOAD_SECONDS": "8"})
    if not STANDIN:
        pytest.skip("load timing is the stand-in's knob")
    stack.up(wait=False)
    wait_for(lambda: probe(stack, "/ready") == 503, 30, "the guard answering 503 during load")
    response = requests.get(stack.base + "/v1/models", timeout=5)
    assert response.status_code == 503 and response.json()["code"] == 503
