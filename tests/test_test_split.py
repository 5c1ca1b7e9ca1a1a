"""`make test-unit` is the Docker-free part of the suite: tests/e2e/ and the tests marked `docker`
stay out of it (pytest.ini declares the marker), everything else is in, and `make test` still
collects all of them."""
import os
import subprocess

from paths import ROOT


def collected(target: str) -> list[str]:
    result = subprocess.run(["make", "--no-print-directory", target, "PYTEST_ARGS=--collect-only -q -p no:cacheprovider"],
                            cwd=ROOT, env={k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    return [line for line in result.stdout.splitlines() if "::" in line]


def test_make_test_unit_leaves_out_what_needs_the_docker_daemon():
    unit, whole = collected("test-unit"), collected("test")
    e2e = [t for t in whole if t.startswith("tests/e2e/")]
    assert len(e2e) > 20 and not [t for t in unit if t.startswith("tests/e2e/")]
    promtool = "tests/test_monitoring.py::test_promtool_checks_the_rendered_config_and_the_rules"   # runs a container
    assert promtool in whole and promtool not in unit
    # Everything else is a unit test: the suite outside tests/e2e/ loses only its few marked tests.
    assert set(unit) <= set(whole)
    assert "tests/test_exit_codes.py::test_a_bad_port_is_a_usage_error_in_every_tool[render]" in unit
    assert 0 < len(set(whole) - set(unit) - set(e2e)) < 10
