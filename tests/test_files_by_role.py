"""Files by role: the product (bundle/, launcher/, entrypoint.py) reads nothing under tests/.

A clone without tests/ (a release tarball, the image's build context) must still render, validate
and run; third-party material the product reads lives with the data (presets/vendor/)."""
import ast

from paths import ROOT

PRODUCT = sorted([*ROOT.glob("bundle/**/*.py"), *ROOT.glob("launcher/**/*.py"), ROOT / "entrypoint.py"])


def paths_into_tests(source: str) -> list[str]:
    """String constants that name tests/ as a path: "tests" (ROOT / "tests" / ...) or "tests/...".
    Prose that mentions tests/ mid-sentence (a message naming the stand-in) is not a path."""
    return [node.value for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and (node.value.strip("/") == "tests" or node.value.startswith("tests/"))]


def test_the_scan_sees_a_path_into_tests():
    assert paths_into_tests('CRD = ROOT / "tests" / "fixtures" / "crd.yaml"') == ["tests"]
    assert paths_into_tests('open("tests/fixtures/crd.yaml")') == ["tests/fixtures/crd.yaml"]
    assert paths_into_tests('NOTE = "the CPU stand-in (tests/standin) answers placeholder words"') == []


def test_no_product_code_reads_tests():
    assert len(PRODUCT) > 10
    found = {str(p.relative_to(ROOT)): hits for p in PRODUCT if (hits := paths_into_tests(p.read_text()))}
    assert found == {}


def test_the_lws_crd_is_read_from_the_data():
    from bundle import k8s
    assert k8s.CRD.is_relative_to(ROOT / "presets" / "vendor")
    assert k8s.CRD.is_file()
