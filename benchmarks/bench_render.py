"""How long rendering and validating every hardware/preset pair takes (no SGLang parser start-up).

    .venv/bin/python benchmarks/bench_render.py
Prints numbers; asserts nothing. Validation = the entrypoint's own checks (inside resolve) plus the
real `docker compose config` of each rendered file.
"""
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bundle import render


def render_all(folder: Path) -> list[Path]:
    data = render.load_data()
    files = []
    for hardware, preset in render.pairs(data):
        out = folder / f"{hardware}-{preset}.yml"
        out.write_text(render.render(data, render.resolve(data, hardware, preset),
                                     render.Params(secrets_dir=str(folder)), out, "bench"))
        files.append(out)
    return files


def main(rounds: int = 5) -> None:
    in_process, with_compose = [], []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "hf_token").write_text("x")
            began = time.perf_counter()
            files = render_all(folder)
            rendered = time.perf_counter()
            for path in files:
                subprocess.run(["docker", "compose", "-f", str(path), "config", "--quiet"], check=True)
            done = time.perf_counter()
        in_process.append(rendered - began)
        with_compose.append(done - began)
    print(f"pairs: {len(files)}")
    print(f"render + entrypoint checks + memory arithmetic, all pairs: median {statistics.median(in_process)*1000:.0f} ms")
    print(f"... plus `docker compose config` of each file:             median {statistics.median(with_compose):.2f} s "
          f"(min {min(with_compose):.2f}, max {max(with_compose):.2f}, {rounds} rounds)")


if __name__ == "__main__":
    main()
