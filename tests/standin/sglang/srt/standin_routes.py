"""SGLang CPU STAND-IN: the route table of SGLang 0.5.23's HTTP server (not the real engine).

Taken from the ``@app.*`` decorators and ``@auth_level(...)`` markers of
``sglang/srt/entrypoints/http_server.py`` (0.5.23), plus the ``/v1/loads``
router and the FastAPI defaults. Every route is registered on the stand-in's
FastAPI app, so Starlette's own matching decides 404/405 and the level the
API-key middleware (``sglang/srt/utils/auth.py``) asks for; routes the
stand-in does not implement still exist, and answer 501 after auth.
"""

NORMAL = "normal"
ADMIN_OPTIONAL = "admin_optional"

# (path, methods, auth level), paths in Starlette's syntax: "{x}" matches one
# path segment, "{x:path}" the rest of the path.
ROUTES = [
    ("/ready", ("GET",), NORMAL),
    ("/health", ("GET",), NORMAL),
    ("/health_generate", ("GET",), NORMAL),
    ("/get_model_info", ("GET",), NORMAL),
    ("/model_info", ("GET",), NORMAL),
    ("/get_server_info", ("GET",), NORMAL),
    ("/server_info", ("GET",), NORMAL),
    ("/set_internal_state", ("POST", "PUT"), ADMIN_OPTIONAL),
    ("/generate", ("POST", "PUT"), NORMAL),
    ("/encode", ("POST", "PUT"), NORMAL),
    ("/classify", ("POST", "PUT"), NORMAL),
    ("/flush_cache", ("GET", "POST"), ADMIN_OPTIONAL),
    ("/add_external_corpus", ("POST",), ADMIN_OPTIONAL),
    ("/remove_external_corpus", ("POST",), ADMIN_OPTIONAL),
    ("/list_external_corpora", ("GET",), ADMIN_OPTIONAL),
    ("/hicache/storage-backend/clear", ("POST",), ADMIN_OPTIONAL),
    ("/hicache/storage-backend", ("PUT", "DELETE", "GET"), ADMIN_OPTIONAL),
    ("/get_hicache_l3_cache_layout", ("GET",), NORMAL),
    ("/start_profile", ("GET", "POST"), ADMIN_OPTIONAL),
    ("/stop_profile", ("GET", "POST"), ADMIN_OPTIONAL),
    ("/set_trace_level", ("GET", "POST"), ADMIN_OPTIONAL),
    ("/freeze_gc", ("GET", "POST"), ADMIN_OPTIONAL),
    ("/start_expert_distribution_record", ("GET", "POST"), ADMIN_OPTIONAL),
    ("/stop_expert_distribution_record", ("GET", "POST"), ADMIN_OPTIONAL),
    ("/dump_expert_distribution_record", ("GET", "POST"), ADMIN_OPTIONAL),
    ("/update_weights_from_disk", ("POST",), ADMIN_OPTIONAL),
    ("/init_weights_send_group_for_remote_instance", ("POST",), ADMIN_OPTIONAL),
    ("/send_weights_to_remote_instance", ("POST",), ADMIN_OPTIONAL),
    ("/get_remote_instance_transfer_engine_info", ("GET",), ADMIN_OPTIONAL),
    ("/remote_instance_transfer_engine_info", ("GET",), ADMIN_OPTIONAL),
    ("/init_weights_update_group", ("POST",), ADMIN_OPTIONAL),
    ("/destroy_weights_update_group", ("POST",), ADMIN_OPTIONAL),
    ("/update_weights_from_tensor", ("POST",), ADMIN_OPTIONAL),
    ("/begin_weight_update", ("POST",), ADMIN_OPTIONAL),
    ("/end_weight_update", ("POST",), ADMIN_OPTIONAL),
    ("/update_weights_from_distributed", ("POST",), ADMIN_OPTIONAL),
    ("/update_weights_from_ipc", ("POST",), ADMIN_OPTIONAL),
    ("/update_weight_version", ("POST",), ADMIN_OPTIONAL),
    ("/get_weights_by_name", ("GET", "POST"), ADMIN_OPTIONAL),
    ("/release_memory_occupation", ("GET", "POST"), ADMIN_OPTIONAL),
    ("/resume_memory_occupation", ("GET", "POST"), ADMIN_OPTIONAL),
    ("/weights_checker", ("GET", "POST"), ADMIN_OPTIONAL),
    ("/slow_down", ("GET", "POST"), ADMIN_OPTIONAL),
    ("/pd_role_switch", ("POST",), ADMIN_OPTIONAL),
    ("/load_lora_adapter", ("POST",), ADMIN_OPTIONAL),
    ("/load_lora_adapter_from_tensors", ("POST",), ADMIN_OPTIONAL),
    ("/unload_lora_adapter", ("POST",), ADMIN_OPTIONAL),
    ("/open_session", ("GET", "POST"), NORMAL),
    ("/close_session", ("GET", "POST"), NORMAL),
    ("/configure_logging", ("GET", "POST"), ADMIN_OPTIONAL),
    ("/abort_request", ("POST",), ADMIN_OPTIONAL),
    ("/parse_function_call", ("POST",), NORMAL),
    ("/separate_reasoning", ("POST",), NORMAL),
    ("/pause_generation", ("POST",), ADMIN_OPTIONAL),
    ("/continue_generation", ("POST",), ADMIN_OPTIONAL),
    ("/v1/completions", ("POST",), NORMAL),
    ("/v1/chat/completions", ("POST",), NORMAL),
    ("/v1/embeddings", ("POST",), NORMAL),
    ("/v1/classify", ("POST",), NORMAL),
    ("/v1/tokenize", ("POST",), NORMAL),
    ("/tokenize", ("POST",), NORMAL),
    ("/v1/detokenize", ("POST",), NORMAL),
    ("/detokenize", ("POST",), NORMAL),
    ("/v1/audio/transcriptions", ("POST",), NORMAL),
    ("/v1/models", ("GET",), NORMAL),
    ("/v1/models/{model:path}", ("GET",), NORMAL),
    ("/v1/score", ("POST",), NORMAL),
    ("/v1/decisions", ("POST",), NORMAL),
    ("/v1/responses", ("POST",), NORMAL),
    ("/v1/responses/{response_id}", ("GET",), NORMAL),
    ("/v1/responses/{response_id}/cancel", ("POST",), NORMAL),
    ("/v1/rerank", ("POST", "PUT"), NORMAL),
    ("/api/chat", ("POST",), NORMAL),
    ("/api/generate", ("POST",), NORMAL),
    ("/api/tags", ("GET",), NORMAL),
    ("/api/show", ("POST",), NORMAL),
    ("/v1/messages", ("POST",), NORMAL),
    ("/v1/messages/count_tokens", ("POST",), NORMAL),
    ("/v1/systemone", ("POST",), NORMAL),
    ("/ping", ("GET",), NORMAL),
    ("/invocations", ("POST",), NORMAL),
    ("/vertex_generate", ("POST",), NORMAL),
    ("/v1/loads", ("GET",), NORMAL),
    ("/", ("GET", "HEAD"), NORMAL),
    # FastAPI defaults
    ("/openapi.json", ("GET", "HEAD"), NORMAL),
    ("/docs", ("GET", "HEAD"), NORMAL),
    ("/docs/oauth2-redirect", ("GET", "HEAD"), NORMAL),
    ("/redoc", ("GET", "HEAD"), NORMAL),
]

# Routes whose env var moves them (SGLang reads these at import time).
ENV_ROUTE_OVERRIDES = {
    "/api/chat": "SGLANG_OLLAMA_CHAT_ROUTE",
    "/api/generate": "SGLANG_OLLAMA_GENERATE_ROUTE",
    "/api/tags": "SGLANG_OLLAMA_TAGS_ROUTE",
    "/api/show": "SGLANG_OLLAMA_SHOW_ROUTE",
    "/vertex_generate": "AIP_PREDICT_ROUTE",
    "/": "SGLANG_OLLAMA_ROOT_ROUTE",
}


def build_routes(environ):
    """(path, methods, level, table path) per route; the path after the env overrides,
    the table path to find the stand-in's handler by."""
    routes = []
    for path, methods, level in ROUTES:
        env = ENV_ROUTE_OVERRIDES.get(path)
        served = environ[env] if env and environ.get(env) else path
        routes.append((served, tuple(methods), level, path))
    return routes
