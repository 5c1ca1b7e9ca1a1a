"""`make mutation`: mutmut over the container runtime and the renderer, judged by the fast tests.

    python tools/mutation.py [MODULE.py ...]     (or MODULES="launcher/command.py ..." in the env)
    python tools/mutation.py --summary           the last run's summary again (mutants/)

Without modules it mutates everything setup.cfg's [mutmut] only_mutate names (launcher/*.py,
bundle/render.py, bundle/schema.py). It starts from a fresh mutants/ (MUTATION_KEEP=1 resumes the
last run's results instead), prints `killed/total` per module and overall, then every surviving
mutant's name; `.venv/bin/mutmut show NAME` (from the repository root) prints its diff.
The summary is also written to mutants/summary.txt. Exit status 0 whatever the score: this
measures, it does not gate. See docs/mutation.md.
"""
import dataclasses
import glob
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KILLED = {1, 3}  # mutmut: pytest failed, or pytest's internal error
TIMEOUT = {36, 24, -24, 152, 255}


# A test process that died of a signal (mutmut: "suspicious"/"segfault"), e.g. a mutant of the
# signal forwarding that sends SIGTERM to the test's own process group: caught, counted as killed.
def crashed(code):
    return code is not None and code < 0 and code not in TIMEOUT


def modules_from(argv):
    names = list(argv) or os.environ.get("MODULES", "").split()
    for name in names:
        if not (ROOT / name).is_file() or not name.endswith(".py"):
            sys.exit(f"mutation: {name!r} is not a Python file of this repository (e.g. launcher/command.py)")
    return names


def configure(modules):
    from mutmut import configuration
    base = configuration._load_config()
    # The judge: setup.cfg's fast, Docker-free test files, plus every tests/test_mutation_*.py.
    selection = base.pytest_add_cli_args_test_selection + sorted(glob.glob("tests/test_mutation_*.py"))
    changes = {"pytest_add_cli_args_test_selection": selection}
    if modules:
        changes["only_mutate"] = modules
    configuration._config = dataclasses.replace(base, **changes)
    return configuration._config


def summarise(cfg):
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.stats import status_by_exit_code
    lines, survivors, total_killed, total = [], [], 0, 0
    for path in sorted(p for p in Path(".").glob("launcher/*.py")) + sorted(Path(".").glob("bundle/*.py")):
        if not cfg.should_mutate(path):
            continue
        data = SourceFileMutationData(path=path)
        data.load()
        codes = data.exit_code_by_key
        if not codes:
            continue
        killed = sum(1 for c in codes.values() if c in KILLED)
        timeouts = sum(1 for c in codes.values() if c in TIMEOUT)
        crashes = sum(1 for c in codes.values() if crashed(c))
        other = {}
        for name, code in sorted(codes.items()):
            status = status_by_exit_code[code]
            if code in KILLED:
                continue
            if code in TIMEOUT or crashed(code):  # a hang the tests stop, or a crash: counted as killed
                killed += 1
                continue
            other[status] = other.get(status, 0) + 1
            survivors.append(f"  {status:10} {name}")
        total_killed += killed
        total += len(codes)
        extra = ", ".join(f"{n} {s}" for s, n in sorted(other.items()))
        lines.append(f"  {str(path):26} {killed:4}/{len(codes):<4} killed ({100 * killed / len(codes):5.1f}%)"
                     + (f"  [{timeouts} by timeout]" if timeouts else "") + (f"  [{crashes} by crash]" if crashes else "")
                     + (f"  ({extra})" if extra else ""))
    out = ["mutation score per module:", *lines,
           f"  {'TOTAL':26} {total_killed:4}/{total:<4} killed"
           + (f" ({100 * total_killed / total:.1f}%)" if total else ""),
           f"survivors ({len(survivors)}; `.venv/bin/mutmut show NAME` prints one):", *survivors]
    return "\n".join(out)


def main(argv):
    os.chdir(ROOT)
    if argv[:1] == ["--summary"]:   # the last run's results again, without running anything
        print(summarise(configure(modules_from(argv[1:]))))
        return 0
    modules = modules_from(argv)
    if os.environ.get("MUTATION_KEEP") != "1":
        shutil.rmtree("mutants", ignore_errors=True)
    Path("mutants").mkdir(exist_ok=True)
    # Tests that run `make` hand it VENV=ROOT/.venv; in the mutants/ copy that must be this venv.
    venv = Path("mutants/.venv")
    if not venv.exists() and not venv.is_symlink():
        venv.symlink_to(Path(sys.prefix).resolve())
    cfg = configure(modules)
    from mutmut.__main__ import cli
    started = time.monotonic()
    # mutmut's default is one worker per core; MUTATION_CHILDREN overrides it.
    children = os.environ.get("MUTATION_CHILDREN")
    try:
        cli(["run", *(["--max-children", children] if children else [])], prog_name="mutmut")
    except SystemExit as exit:
        if exit.code not in (0, None):
            print(f"mutation: mutmut stopped with {exit.code}", file=sys.stderr)
            return 2
    elapsed = time.monotonic() - started
    os.chdir(ROOT)
    report = summarise(cfg) + f"\nrun time: {elapsed / 60:.1f} min on {os.cpu_count()} cores\n"
    Path("mutants/summary.txt").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
