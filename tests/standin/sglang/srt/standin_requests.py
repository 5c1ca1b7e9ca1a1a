"""SGLang CPU STAND-IN: request bodies and error answers, as FastAPI and SGLang give them
(not the real engine, no model)."""

import json
from typing import Any, Dict, List, Optional

from sglang.srt.standin_http import Exchange, HTTPError


def openai_error(message: str, err_type: str = "BadRequestError", status: int = 400,
                 param=None) -> HTTPError:
    return HTTPError(status, {"object": "error", "message": message, "type": err_type,
                              "param": param, "code": status})


def validation_error(errors: List[Dict[str, Any]]) -> HTTPError:
    """FastAPI RequestValidationError as SGLang turns it into a 400."""
    n = len(errors)
    exc_str = f"{n} validation error{'s' if n != 1 else ''}:\n" + "".join(f"  {e}\n" for e in errors)
    message = f"{exc_str} {errors}"
    return openai_error(message, err_type="Bad Request", status=400)


def json_body(raw: bytes) -> Any:
    """The request body as FastAPI's body parsing reports it: a 400 validation error."""
    if not raw:
        raise validation_error([{"type": "missing", "loc": ("body",),
                                 "msg": "Field required", "input": None}])
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise validation_error([{"type": "json_invalid", "loc": ("body", 0),
                                 "msg": "JSON decode error", "input": {},
                                 "ctx": {"error": str(e)}}]) from None


def as_int(value, name: str) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            isinstance(value, float) and not value.is_integer()):
        raise validation_error([{"type": "int_type", "loc": ("body", name),
                                 "msg": "Input should be a valid integer", "input": value}])
    return int(value)


def stop_list(stop) -> List[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list):
        return [s for s in stop if isinstance(s, str)]
    return []


def require_json_content_type(h: Exchange):
    content_type = (h.headers.get("Content-Type") or "").lower()
    if content_type.split(";", 1)[0].strip() != "application/json":
        raise validation_error([{
            "loc": ["header", "content-type"],
            "msg": "Unsupported Media Type: Only 'application/json' is allowed",
            "type": "value_error"}])
