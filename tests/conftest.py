"""Shared fixtures. The suite runs against the CPU stand-in engine by default; set
BUNDLE_TEST_TARGET=gpu (make test-gpu) on a GPU host to run the container tests against the real
image and model."""
import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import entrypoint  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
TARGET = os.environ.get("BUNDLE_TEST_TARGET", "standin")


@pytest.fixture(scope="session")
def catalogue():
    return entrypoint.Catalogue.load()
