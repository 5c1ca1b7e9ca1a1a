from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
# Third-party material the product reads (the LeaderWorkerSet CRD): data, not tests.
VENDOR = ROOT / "presets" / "vendor"
