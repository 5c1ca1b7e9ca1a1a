#!/usr/bin/env python3
"""Write launcher/sglang_routes.json, read from the installed SGLang's source (no import: the HTTP
server needs a GPU stack):

- `admin_optional`, `admin_force`: every route SGLang marks with @auth_level; the guard's admin-route
  table;
- `routes`: every route of SGLang's HTTP server (srt/entrypoints/http_server.py and the routers it
  includes, e.g. v1_loads) whose path is a literal, in registration order, with its methods and auth
  level (`normal` unless @auth_level says otherwise), and `only_if`, the source of the module-level
  `if` it sits under, if any. Routes whose path comes from the environment (Ollama, Vertex) and
  websocket routes are left out. The CPU stand-in (tests/standin/) registers its routes from it.

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


def _route_decorators(function) -> tuple[str, list[tuple[str, ast.AST, list[str]]]]:
    """(auth level, [(receiver, path node, methods)]) of a function's route decorators, in the
    order they register (the decorator nearest the function first)."""
    level, routes = "normal", []
    for decorator in reversed(function.decorator_list):
        if not isinstance(decorator, ast.Call):
            continue
        if isinstance(decorator.func, ast.Name) and decorator.func.id == "auth_level":
            level = decorator.args[0].attr.lower()
        elif isinstance(decorator.func, ast.Attribute) and decorator.func.attr in DECORATOR_METHODS \
                and isinstance(decorator.func.value, ast.Name):
            given = [k.value for k in decorator.keywords if k.arg == "methods"]
            if given:
                methods = [m.upper() for m in ast.literal_eval(given[0])]
            elif decorator.func.attr == "api_route":
                methods = ["GET"]
            else:
                methods = [decorator.func.attr.upper()]
            routes.append((decorator.func.value.id, decorator.args[0], methods))
    return level, routes


def _module_file(folder: Path, module: str) -> Path:
    return folder.joinpath(*module.split(".")[1:]).with_suffix(".py")


def server_routes(folder: Path, module: str = "sglang.srt.entrypoints.http_server",
                  receiver: str = "app") -> list[dict]:
    """The literal-path routes `receiver` gets in `module`, in registration order: decorated
    functions at module level (also under a module-level if/else, recorded in `only_if`) and the
    routers it includes, where they are included."""
    source = _module_file(folder, module)
    tree = ast.parse(source.read_text())
    imported = {alias.asname or alias.name: (node.module, alias.name)
                for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
                for alias in node.names}
    for node in ast.walk(tree):   # a prefix would change every path of the router
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                node.func.id == "APIRouter" and node.keywords:
            sys.exit(f"{source}: APIRouter(...) with arguments: extend the scan")
    found, seen_decorators = [], set()

    def walk(statements, conditions):
        for node in statements:
            if isinstance(node, ast.If):
                condition = ast.unparse(node.test)
                walk(node.body, conditions + [condition])
                walk(node.orelse, conditions + [f"not ({condition})"])
            elif isinstance(node, ast.Try):
                walk(node.body + node.orelse + node.finalbody, conditions)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                level, routes = _route_decorators(node)
                for owner, path, methods in routes:
                    seen_decorators.add(id(path))
                    if owner != receiver or not (isinstance(path, ast.Constant) and isinstance(path.value, str)):
                        continue   # another app, or a path from the environment
                    route = {"path": path.value, "methods": " ".join(sorted(set(methods))), "auth": level}
                    if conditions:
                        route["only_if"] = " and ".join(conditions)
                    found.append(route)
            elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and \
                    isinstance(node.value.func, ast.Attribute) and node.value.func.attr == "include_router":
                call = node.value
                if not (isinstance(call.func.value, ast.Name) and call.func.value.id == receiver):
                    continue
                if call.keywords or len(call.args) != 1 or not isinstance(call.args[0], ast.Name) \
                        or call.args[0].id not in imported:
                    sys.exit(f"{source}: {ast.unparse(call)}: extend the scan")
                router_module, router_name = imported[call.args[0].id]
                for route in server_routes(folder, router_module, router_name):
                    if conditions:
                        route["only_if"] = " and ".join(conditions + [route["only_if"]] if "only_if" in route
                                                        else conditions)
                    found.append(route)

    walk(tree.body, [])
    for node in ast.walk(tree):   # a route declared inside a function or class would be missed
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for owner, path, _ in _route_decorators(node)[1]:
                if owner == receiver and id(path) not in seen_decorators:
                    sys.exit(f"{source}:{path.lineno}: a {receiver} route outside module level: extend the scan")
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
        "routes": server_routes(folder),
    }


if __name__ == "__main__":
    print(json.dumps(routes_document(sglang_package_dir()), indent=1))
