#!/usr/bin/env python3
"""Write launcher/sglang_routes.json: every route the installed SGLang marks with @auth_level, read
from its source (no import: the HTTP server needs a GPU stack). The guard's admin-route table.

    python tools/gen_sglang_routes.py > launcher/sglang_routes.json     (make generate)
"""
import ast
import importlib.util
import json
import sys
from importlib.metadata import version
from pathlib import Path

DECORATOR_METHODS = ("get", "post", "put", "delete", "head", "patch", "api_route")


def sglang_package_dir() -> Path:
    spec = importlib.util.find_spec("sglang")   # finds without importing
    if not spec or not spec.submodule_search_locations:
        sys.exit("sglang is not installed in this Python (make provision installs it in .venv)")
    return Path(list(spec.submodule_search_locations)[0])


def declared_auth_levels(folder: Path) -> set[tuple[str, str, str]]:
    """(level, path, method) for every route SGLang marks with @auth_level."""
    found = set()
    for source in sorted((folder / "srt" / "entrypoints").rglob("*.py")):
        for node in ast.walk(ast.parse(source.read_text())):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            level, routes = None, []
            for decorator in node.decorator_list:
                if not isinstance(decorator, ast.Call):
                    continue
                if isinstance(decorator.func, ast.Name) and decorator.func.id == "auth_level":
                    level = decorator.args[0].attr.lower()
                elif isinstance(decorator.func, ast.Attribute) and decorator.func.attr in DECORATOR_METHODS:
                    given = [k.value for k in decorator.keywords if k.arg == "methods"]
                    if given:
                        methods = ast.literal_eval(given[0])
                    elif decorator.func.attr == "api_route":
                        methods = ["GET"]
                    else:
                        methods = [decorator.func.attr.upper()]
                    routes += [(decorator.args[0], method.upper()) for method in methods]
            if level:   # admin paths are literals; some NORMAL ones come from the environment
                found |= {(level, ast.literal_eval(path), method) for path, method in routes}
    return found


def routes_document(folder: Path) -> dict:
    users = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.py")
                   if "@auth_level(" in p.read_text(errors="replace"))
    outside = [u for u in users if not u.startswith("srt/entrypoints/")]
    if outside:
        sys.exit(f"@auth_level is used outside srt/entrypoints/ ({outside}): extend the scan")
    by_level: dict[str, dict[str, set]] = {"admin_optional": {}, "admin_force": {}}
    for level, path, method in declared_auth_levels(folder):
        if level in by_level:
            by_level[level].setdefault(path, set()).add(method)
    return {
        "sglang_version": version("sglang"),
        "generated_by": "python tools/gen_sglang_routes.py > launcher/sglang_routes.json (do not edit)",
        **{level: [[path, " ".join(sorted(methods))] for path, methods in sorted(routes.items())]
           for level, routes in by_level.items()},
    }


if __name__ == "__main__":
    print(json.dumps(routes_document(sglang_package_dir()), indent=1))
