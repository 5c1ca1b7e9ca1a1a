"""Every host tool ends quietly when its reader goes away (bundle/cli.py), as Unix tools do:
`make presets | head -3` prints head's lines and no BrokenPipeError traceback. The pipes are real
(os.pipe), their reading end closed before the tool writes, so that the first write fails with
EPIPE whatever the timing; the status is SIGPIPE's, as for `yes | head -1`."""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys

import pytest

from paths import ROOT

BUNDLE = ROOT / "bundle"
MAIN_BLOCK = re.compile(r'^if __name__ == "__main__":\n((?:    .*\n?)+)', re.M)


def entry_points() -> list[str]:
    return sorted(path.stem for path in BUNDLE.glob("*.py") if MAIN_BLOCK.search(path.read_text()))


def run_into_closed_pipe(argv, stream="stdout", **kwargs):
    """Run argv with its stdout (or stderr) on a pipe nobody reads any more; the other one captured."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        other = "stderr" if stream == "stdout" else "stdout"
        result = subprocess.run(argv, cwd=ROOT, **{stream: write_end, other: subprocess.PIPE}, text=True,
                                timeout=120, **kwargs)
    finally:
        os.close(write_end)
    return result.returncode, getattr(result, other)


def assert_quiet(code, said):
    assert "Traceback" not in said and "BrokenPipeError" not in said and "Exception ignored" not in said, said
    assert code == -signal.SIGPIPE, (code, said)      # ended by SIGPIPE, as a Unix tool is


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def case(module: str, tmp_path):
    """(arguments, extra environment, the stream it writes to first) for each entry point: what it
    prints without touching anything outside tmp_path; readme (it writes README.md) is only checked
    by its __main__ block, below. argparse's --help is no case: argparse itself swallows EPIPE."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "hf_token").write_text("hf_cliTestToken\n")
    (secrets / "hf_token").chmod(0o600)
    host = {"HARDWARE": "h100x4", "PORT": str(free_port()), "HF_CACHE": str(tmp_path / "hf"),
            "SECRETS_DIR": str(secrets), "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    return {
        "bench": (["settings"], {}, "stdout"),
        "evaluate": (["settings"], {}, "stdout"),
        "render": (["presets"], {}, "stdout"),
        "options": ([], {}, "stdout"),
        "schema": ([], {}, "stdout"),
        "monitoring": (["expressions"], {}, "stdout"),
        "k8s": (["render"], {"HARDWARE": "h100x4", "OUT": str(tmp_path / "k8s")}, "stdout"),
        "doctor": ([], host, "stdout"),                       # this host's checks: reads only
        "download": ([], host, "stdout"),                     # says what it fetches before asking the Hub
        "deploy": ([], {**host, "PORT": "80000"}, "stderr"),  # refused before anything starts
        "inventory": ([], {}, "stderr"),                      # make hosts without INVENTORY=
        "keys": ([str(tmp_path / "api_key")], {}, "stdout"),   # make api-key: a new key in tmp_path
        "dockerfiles": (["--data", str(tmp_path / "no-data")], {}, "stderr"),   # refused: writes nothing
    }[module]


CASES = ("bench", "evaluate", "render", "options", "schema", "monitoring", "k8s", "doctor", "download", "deploy",
         "inventory", "keys", "dockerfiles")


@pytest.mark.parametrize("module", CASES)
def test_a_tool_whose_reader_has_gone_ends_quietly(module, tmp_path):
    argv, extra, stream = case(module, tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("HARDWARE", "OUT", "INVENTORY", "ONLINE")}
    code, said = run_into_closed_pipe([sys.executable, "-m", f"bundle.{module}", *argv], stream=stream,
                                      env={**env, **extra})
    assert_quiet(code, said)


def test_make_presets_into_a_closed_pipe_prints_no_traceback():
    """make reports its recipe ended by SIGPIPE as it does for `yes` ("Broken pipe"), nothing more."""
    code, stderr = run_into_closed_pipe([shutil.which("make"), "--no-print-directory", "presets"],
                                        env={**os.environ, "VENV": str(ROOT / ".venv")})
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    # make[N]: when the suite itself runs under make (make test, as CI does)
    assert re.fullmatch(r"make(\[\d+\])?: \*\*\* \[Makefile:\d+: presets\] Broken pipe\n", stderr), stderr
    assert code == 2


def test_a_reader_that_stays_gets_everything_and_status_0():
    quiet = subprocess.run([sys.executable, "-m", "bundle.render", "presets"], cwd=ROOT, capture_output=True,
                           text=True, timeout=60)
    assert quiet.returncode == 0 and quiet.stderr == ""
    assert "h100x4 basic" in quiet.stdout.splitlines()


def test_a_broken_pipe_that_is_not_stdout_keeps_its_traceback(tmp_path):
    """A BrokenPipeError of a socket or a child's stdin is a real error, not a reader gone."""
    script = tmp_path / "tool.py"
    script.write_text("import os\nfrom bundle import cli\n"
                      "def main():\n    r, w = os.pipe()\n    os.close(r)\n    os.write(w, b'x')\n"
                      "cli.run(main)\n")
    result = subprocess.run([sys.executable, str(script)], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 1 and "BrokenPipeError" in result.stderr


def test_every_entry_point_goes_through_the_shared_helper():
    modules = entry_points()
    assert {"render", "options", "deploy", "doctor", "readme"} <= set(modules)
    for module in modules:
        block = MAIN_BLOCK.search((BUNDLE / f"{module}.py").read_text()).group(1)
        assert "cli.run(" in block and "sys.exit(" not in block, (module, block)
    assert set(CASES) | {"readme"} >= set(modules), "a new entry point: give it a case above"


def test_ctrl_c_ends_a_tool_with_one_line_and_status_130(tmp_path):
    """A real SIGINT while the tool waits (as make deploy waits for the engine), not a raised exception."""
    script = tmp_path / "tool.py"
    script.write_text("import sys, time\nfrom bundle import cli\n"
                      "def main():\n    print('waiting', flush=True)\n    time.sleep(60)\n    return 0\n"
                      "cli.run(main)\n")
    tool = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert tool.stdout.readline() == "waiting\n"           # in main(), past the imports
        tool.send_signal(signal.SIGINT)
        _, stderr = tool.communicate(timeout=30)
    finally:
        tool.kill()
    assert tool.returncode == 130
    assert stderr == "interrupted\n"
