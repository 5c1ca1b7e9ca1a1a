"""entrypoint.py: environment -> SGLang argv, every flag kind and every refusal; secrets; preflight."""
import json
import os
import subprocess
import sys

import pytest

from paths import FIXTURES, ROOT
from launcher import sglang_flags, command, credentials, gpus, memory, settings, supervise
from launcher.command import build_config
from launcher.settings import ConfigError

DEFAULTS = settings.BundleSettings.from_environ({})


def argv_for(env, args=(), catalogue=None):
    catalogue = catalogue or sglang_flags.Catalogue.load()
    return build_config(env, list(args), catalogue).argv


def flags_after(argv, option):
    index = argv.index(option)
    return argv[index + 1]


# --- the naming rule -------------------------------------------------------------------------

def test_every_option_string_has_exactly_one_env_name(catalogue):
    options = [o for f in catalogue.flags for o in f.options]
    names = {sglang_flags.env_name_for_option(o) for o in options}
    assert len(options) == 559  # SGLang 0.5.23: 561 option strings less -h/--help
    assert len(names) == len(options)


def test_every_option_can_be_set_from_its_env_name(catalogue):
    """The env name is spelled here by hand from the rule (not by env_name_for_option), and looked up
    the way the container does it."""
    samples = {"int": "2", "float": "0.5", "str": "x", "human_readable_int": "4k", "json": "{}"}
    secret_names = {"ENGINE_API_KEY", "ENGINE_ADMIN_API_KEY"}
    checked = 0
    for flag in catalogue.flags:
        for option in flag.options:
            name = "ENGINE_" + option[2:].upper().replace("-", "_")
            if flag.kind != "value":
                text = "true"
            elif flag.choices:
                text = str(flag.choices[0])
            else:
                text = samples[flag.type]
            chosen = command.collect_environment({name: text}, catalogue)
            if name in secret_names:
                assert chosen == {}, name   # secrets never become flags
                continue
            assert list(chosen) == [flag.dest] and chosen[flag.dest].source == name, name
            assert chosen[flag.dest].tokens[0] in flag.options, name
            checked += 1
    assert checked == 559 - len(secret_names)


# --- types ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [("true", ["--enable-metrics"]), ("YES", ["--enable-metrics"]),
                                           ("1", ["--enable-metrics"]), ("false", []), ("0", [])])
def test_switch(text, expected):
    argv = argv_for({"ENGINE_ENABLE_METRICS": text})
    assert ("--enable-metrics" in argv) == bool(expected)


def test_negatable_switch_false_gives_the_no_form():
    assert "--no-enable-tf32-matmul" in argv_for({"ENGINE_ENABLE_TF32_MATMUL": "false"})
    assert "--enable-tf32-matmul" in argv_for({"ENGINE_ENABLE_TF32_MATMUL": "on"})
    assert "--enable-tf32-matmul" in argv_for({"ENGINE_NO_ENABLE_TF32_MATMUL": "false"})


def test_bad_boolean_names_the_variable():
    with pytest.raises(ConfigError, match=r"ENGINE_ENABLE_METRICS='maybe'.*boolean"):
        argv_for({"ENGINE_ENABLE_METRICS": "maybe"})


def test_int_float_and_their_errors():
    argv = argv_for({"ENGINE_TP_SIZE": "4", "ENGINE_MEM_FRACTION_STATIC": "0.85"})
    assert flags_after(argv, "--tp-size") == "4" and flags_after(argv, "--mem-fraction-static") == "0.85"
    with pytest.raises(ConfigError, match=r"ENGINE_TP_SIZE='four'.*--tp-size expects an integer"):
        argv_for({"ENGINE_TP_SIZE": "four"})
    with pytest.raises(ConfigError, match=r"ENGINE_MEM_FRACTION_STATIC='most'.*a number"):
        argv_for({"ENGINE_MEM_FRACTION_STATIC": "most"})


@pytest.mark.parametrize("text,value", [("131072", 131072), ("128k", 128000), ("128Ki", 131072),
                                        ("25.6k", 25600), ("1M", 1000000)])
def test_human_readable_context_length(text, value):
    config = build_config({"ENGINE_CONTEXT_LENGTH": text}, [], sglang_flags.Catalogue.load())
    assert config.values["context_length"] == value
    assert flags_after(config.argv, "--context-length") == text


@pytest.mark.parametrize("text", ["32K", "1.5Ki", "lots"])
def test_human_readable_context_length_errors(text):
    with pytest.raises(ConfigError, match="ENGINE_CONTEXT_LENGTH"):
        argv_for({"ENGINE_CONTEXT_LENGTH": text})


def test_choices_are_enforced_and_listed():
    with pytest.raises(ConfigError, match=r"ENGINE_KV_CACHE_DTYPE='fp9'.*one of: .*fp8_e4m3"):
        argv_for({"ENGINE_KV_CACHE_DTYPE": "fp9"})


def test_lists_from_commas_or_json():
    argv = argv_for({"ENGINE_LORA_PATHS": "sql=/adapters/sql, chat=/adapters/chat"})
    i = argv.index("--lora-paths")
    assert argv[i + 1:i + 3] == ["sql=/adapters/sql", "chat=/adapters/chat"]
    argv = argv_for({"ENGINE_LORA_PATHS": '[{"lora_name": "a", "lora_path": "/x"}]'})
    assert json.loads(argv[argv.index("--lora-paths") + 1]) == {"lora_name": "a", "lora_path": "/x"}
    argv = argv_for({"ENGINE_CUDA_GRAPH_BS_DECODE": "1 2 4"})
    i = argv.index("--cuda-graph-bs-decode")
    assert argv[i + 1:i + 4] == ["1", "2", "4"]
    with pytest.raises(ConfigError, match="ENGINE_CUDA_GRAPH_BS_DECODE='1,two'"):
        argv_for({"ENGINE_CUDA_GRAPH_BS_DECODE": "1,two"})


def test_json_valued_flag():
    argv = argv_for({"ENGINE_PREFERRED_SAMPLING_PARAMS": '{"temperature": 0.6}'})
    assert json.loads(flags_after(argv, "--preferred-sampling-params")) == {"temperature": 0.6}
    with pytest.raises(ConfigError, match="ENGINE_PREFERRED_SAMPLING_PARAMS.*JSON"):
        argv_for({"ENGINE_PREFERRED_SAMPLING_PARAMS": "{temperature: 0.6"})


# --- precedence, aliases, typos ---------------------------------------------------------------

def test_arguments_beat_environment_beat_defaults():
    config = build_config({"ENGINE_TP_SIZE": "2"}, ["--tp-size", "4"], sglang_flags.Catalogue.load())
    assert config.argv.count("--tp-size") == 1 and config.values["tp_size"] == 4
    config = build_config({"ENGINE_TP_SIZE": "2"}, [], sglang_flags.Catalogue.load())
    assert config.values["tp_size"] == 2
    assert config.values["model_path"] == command.DEFAULT_MODEL


def test_container_arguments_must_use_full_option_names():
    with pytest.raises(ConfigError, match=r"'--tp'.*abbreviates --tp-size"):
        argv_for({}, ["--tp", "4"])
    with pytest.raises(ConfigError, match="--cpu-offload-gigabytes.*not an SGLang"):
        argv_for({}, ["--cpu-offload-gigabytes", "16"])


def test_aliases_and_their_conflict():
    config = build_config({"MODEL": "meta-llama/Llama-3.1-8B-Instruct", "PORT": "9000"}, [],
                          sglang_flags.Catalogue.load())
    assert config.values["model_path"] == "meta-llama/Llama-3.1-8B-Instruct" and config.values["port"] == 9000
    with pytest.raises(ConfigError, match="both MODEL and ENGINE_MODEL_PATH"):
        argv_for({"MODEL": "a", "ENGINE_MODEL_PATH": "b"})
    with pytest.raises(ConfigError, match="ENGINE_TP_SIZE and ENGINE_TENSOR_PARALLEL_SIZE|ENGINE_TENSOR_PARALLEL_SIZE and ENGINE_TP_SIZE"):
        argv_for({"ENGINE_TP_SIZE": "2", "ENGINE_TENSOR_PARALLEL_SIZE": "4"})


def test_typo_suggests_the_closest_names():
    with pytest.raises(ConfigError, match=r"ENGINE_TP_SIZ is not a setting.*Did you mean ENGINE_TP_SIZE"):
        argv_for({"ENGINE_TP_SIZ": "4"})
    with pytest.raises(ConfigError, match=r"ENGINE_MEM_FRACTION_STATICS.*ENGINE_MEM_FRACTION_STATIC"):
        argv_for({"ENGINE_MEM_FRACTION_STATICS": "0.8"})


def test_unrelated_environment_is_ignored():
    assert argv_for({"PATH": "/bin", "SGLANG_PORT": "1", "NCCL_DEBUG": "INFO"}) == argv_for({})


def test_refused_flags():
    with pytest.raises(ConfigError, match="--grpc-mode is not supported"):
        argv_for({"ENGINE_GRPC_MODE": "true"})


def test_deprecated_flag_warns_with_replacement():
    config = build_config({"ENGINE_DISABLE_CUDA_GRAPH": "true"}, [], sglang_flags.Catalogue.load())
    assert any("cuda-graph-backend" in w for w in config.warnings)


# --- conflicts SGLang finds only after loading ------------------------------------------------

SPEC = {"ENGINE_SPECULATIVE_ALGORITHM": "EAGLE3",
        "ENGINE_SPECULATIVE_DRAFT_MODEL_PATH": "lmsys/SGLang-EAGLE3-Llama-3.3-70B-Instruct-SpecForge",
        "ENGINE_SPECULATIVE_NUM_STEPS": "3", "ENGINE_SPECULATIVE_EAGLE_TOPK": "1",
        "ENGINE_SPECULATIVE_NUM_DRAFT_TOKENS": "4", "ENGINE_MAX_RUNNING_REQUESTS": "64"}


def test_complete_speculative_config_is_accepted():
    config = build_config(SPEC, [], sglang_flags.Catalogue.load())
    assert config.values["speculative_num_steps"] == 3 and not config.warnings


@pytest.mark.parametrize("algorithm", ["EAGLE", "eagle3", "NEXTN"])
def test_eagle_without_draft_is_refused(algorithm):
    env = {k: v for k, v in SPEC.items() if k != "ENGINE_SPECULATIVE_DRAFT_MODEL_PATH"}
    env["ENGINE_SPECULATIVE_ALGORITHM"] = algorithm
    with pytest.raises(ConfigError, match="needs a draft model.*ENGINE_SPECULATIVE_DRAFT_MODEL_PATH"):
        argv_for(env)


def test_partial_step_parameters_are_refused():
    env = {k: v for k, v in SPEC.items() if k != "ENGINE_SPECULATIVE_EAGLE_TOPK"}
    with pytest.raises(ConfigError, match="all-or-nothing.*ENGINE_SPECULATIVE_EAGLE_TOPK"):
        argv_for(env)


def test_speculative_without_max_running_requests_warns():
    env = {k: v for k, v in SPEC.items() if k != "ENGINE_MAX_RUNNING_REQUESTS"}
    assert any("48" in w for w in build_config(env, [], sglang_flags.Catalogue.load()).warnings)


def test_data_parallel_across_nodes_is_refused():
    with pytest.raises(ConfigError, match="across nodes"):
        argv_for({"ENGINE_DP_SIZE": "2", "ENGINE_NNODES": "2", "ENGINE_TP_SIZE": "8"})


def test_tp_pp_not_divisible_by_nodes_is_refused():
    with pytest.raises(ConfigError, match=r"tp_size\*pp_size = 3\*1 = 3 is not divisible by nnodes = 2"):
        argv_for({"ENGINE_TP_SIZE": "3", "ENGINE_NNODES": "2"})


def test_attention_dp_rules():
    with pytest.raises(ConfigError, match="attention DP"):
        argv_for({"ENGINE_ATTN_DP_SIZE": "2", "ENGINE_DP_SIZE": "2", "ENGINE_TP_SIZE": "4"})
    with pytest.raises(ConfigError, match="must divide"):
        argv_for({"ENGINE_ATTN_DP_SIZE": "3", "ENGINE_TP_SIZE": "4"})


def test_served_model_name_without_colon():
    with pytest.raises(ConfigError, match="must not contain ':'"):
        argv_for({"ENGINE_SERVED_MODEL_NAME": "llama:70b"})


@pytest.mark.parametrize("workers, refused", [("1", False), ("2", True), ("8", True)])
def test_several_tokenizer_workers_are_refused_since_the_engine_always_has_a_key(workers, refused):
    # SGLang asserts that no API key is set with --tokenizer-worker-num > 1, and the engine now
    # always runs with its own per-start key (the second wall).
    env = {"ENGINE_TOKENIZER_WORKER_NUM": workers}
    if refused:
        with pytest.raises(ConfigError, match="ENGINE_TOKENIZER_WORKER_NUM.*guard"):
            build_config(env, [], sglang_flags.Catalogue.load())
    else:
        assert build_config(env, [], sglang_flags.Catalogue.load()).values["tokenizer_worker_num"] == 1


# --- secrets ----------------------------------------------------------------------------------

def test_secret_files_and_exclusivity(tmp_path):
    key = tmp_path / "api_key"
    key.write_text("canary-key\n")
    config = build_config({"ENGINE_API_KEY_FILE": str(key)}, [], sglang_flags.Catalogue.load())
    assert config.api_key == "canary-key"
    assert "canary-key" not in " ".join(config.engine_argv(DEFAULTS))
    with pytest.raises(ConfigError, match="both ENGINE_API_KEY and ENGINE_API_KEY_FILE"):
        build_config({"ENGINE_API_KEY_FILE": str(key), "ENGINE_API_KEY": "x"}, [], sglang_flags.Catalogue.load())
    with pytest.raises(ConfigError, match="ENGINE_API_KEY_FILE=.*cannot read"):
        build_config({"ENGINE_API_KEY_FILE": str(tmp_path / "missing")}, [], sglang_flags.Catalogue.load())
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match="is empty"):
        build_config({"ENGINE_ADMIN_API_KEY_FILE": str(tmp_path / "empty")}, [], sglang_flags.Catalogue.load())


def test_secret_as_container_argument_is_refused():
    with pytest.raises(ConfigError, match="docker inspect.*ENGINE_API_KEY_FILE"):
        argv_for({}, ["--api-key", "canary"])


def test_engine_environment_carries_the_token_as_a_file_only(tmp_path):
    env = supervise.engine_environment({"HF_TOKEN_FILE": "/run/secrets/hf_token", "ENGINE_TP_SIZE": "4",
                                         "BUNDLE_PREFLIGHT": "0", "PATH": "/bin", "MODEL": "m"}, "hf_canary")
    assert env == {"HF_TOKEN_PATH": "/run/secrets/hf_token", "PATH": "/bin"}


def test_redaction():
    assert credentials.redact("key=abc and abc", ["abc"]) == "key=<redacted> and <redacted>"


# --- preflight and the memory arithmetic ------------------------------------------------------

@pytest.mark.parametrize("machine,count,name,memory", [("h100x1", 1, "NVIDIA H100 80GB HBM3", 81559),
                                                       ("h200x2", 2, "NVIDIA H200", 143771),
                                                       ("h200x4", 4, "NVIDIA H200", 143771)])
@pytest.mark.parametrize("variant", ["query-gpu.csv", "query-gpu-noheader-nounits.csv"])
def test_nvidia_smi_parsing_of_real_output(machine, count, name, memory, variant):
    found = gpus.parse_nvidia_smi_csv((FIXTURES / "gpu" / machine / variant).read_text())
    assert [g.index for g in found] == list(range(count))
    assert {g.name for g in found} == {name} and {g.memory_mib for g in found} == {memory}
    assert {g.driver for g in found} == {"580.159.04"}


def gpus_of(machine):
    return gpus.parse_nvidia_smi_csv((FIXTURES / "gpu" / machine / "query-gpu.csv").read_text())


def preflight_for(env, machine, environ=None):
    config = build_config(env, [], sglang_flags.Catalogue.load())
    environ = {"CUDA_VERSION": "13.0.1", **(environ or {})}
    return gpus.preflight(config, settings.BundleSettings.from_environ(environ), environ, gpus_of(machine))


def test_preflight_accepts_bf16_70b_on_four_h200():
    notes = preflight_for({"ENGINE_TP_SIZE": "4"}, "h200x4")
    assert any("BF16 weights 32.9 GiB per GPU" in n for n in notes)


def test_preflight_refuses_more_gpus_than_visible():
    with pytest.raises(ConfigError, match=r"4 GPUs .* but 2 visible"):
        preflight_for({"ENGINE_TP_SIZE": "4"}, "h200x2")
    with pytest.raises(ConfigError, match=r"= 4 GPUs"):
        preflight_for({"ENGINE_TP_SIZE": "2", "ENGINE_DP_SIZE": "2"}, "h200x2")


def test_preflight_refuses_70b_bf16_on_one_h100_with_the_arithmetic():
    with pytest.raises(ConfigError, match=r"does not fit.*BF16 weights 131\.4 GiB per GPU.*79\.6 GiB"):
        preflight_for({}, "h100x1")


def test_preflight_refuses_old_driver_for_cuda13():
    with pytest.raises(ConfigError, match="driver 580.159.04 is older than 590"):
        preflight_for({"ENGINE_TP_SIZE": "4"}, "h200x4", {"BUNDLE_GPU_DRIVER_MIN": "590"})
    assert gpus.required_driver(DEFAULTS, {"CUDA_VERSION": "12.8.1"}) == 570


def test_preflight_warns_about_docker_default_shm_for_tensor_parallel():
    config = build_config({"ENGINE_TP_SIZE": "4"}, [], sglang_flags.Catalogue.load())
    environ = {"CUDA_VERSION": "13.0.1"}
    notes = gpus.preflight(config, DEFAULTS, environ, gpus_of("h200x4"), shm_bytes=64 * 2 ** 20)
    assert any("/dev/shm is 64 MiB" in n and "ipc: host" in n for n in notes)
    assert not any("/dev/shm" in n for n in gpus.preflight(config, DEFAULTS, environ, gpus_of("h200x4"),
                                                                  shm_bytes=512 * 2 ** 30))


def test_preflight_without_gpus_says_what_to_check():
    config = build_config({}, [], sglang_flags.Catalogue.load())
    with pytest.raises(ConfigError, match="no GPU visible.*BUNDLE_PREFLIGHT=0"):
        gpus.preflight(config, DEFAULTS, {}, [])


def test_preflight_uses_cached_config_json(tmp_path):
    snapshot = tmp_path / "hub" / "models--acme--tiny" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    snapshot.joinpath("config.json").write_text(json.dumps({
        "num_hidden_layers": 2, "hidden_size": 256, "intermediate_size": 512, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 1000, "max_position_embeddings": 2048}))
    shape = memory.model_shape("acme/tiny", {"HF_HOME": str(tmp_path)})
    assert shape.layers == 2 and shape.head_dim == 64 and shape.max_context == 2048


def test_memory_arithmetic_of_the_seed_generators_tp2_bf16_on_h100():
    # The seed's generator: --tp 2, BF16 70B, --mem-fraction-static 0.85 on 80 GB H100s.
    plan = memory.plan_memory("meta-llama/Llama-3.1-70B-Instruct", memory.KNOWN_MODELS[
        "meta-llama/Llama-3.1-70B-Instruct"], {"tp_size": 2, "mem_fraction_static": 0.85}, 81559 / 1024)
    assert round(plan.weights_gib, 1) == 65.7
    assert 12_000 < plan.kv_tokens < 14_000 and not plan.fits
    params = memory.LLAMA31["70B"].linear_params + memory.LLAMA31["70B"].other_params
    assert params == 70_553_706_496


def test_amd_smi_json_parsing():
    text = json.dumps({"card0": {"Card Series": "AMD Instinct MI300X", "VRAM Total Memory (B)": "206141652992"},
                       "card1": {"Card Series": "AMD Instinct MI300X", "VRAM Total Memory (B)": "206141652992"},
                       "system": {"Driver version": "6.8.5"}})
    found = gpus.parse_amd_smi_json(text)
    assert [g.index for g in found] == [0, 1] and found[0].memory_mib == 196592 and found[0].vendor == "amd"


# --- the command-line modes, as tooling calls them --------------------------------------------

def run_entrypoint(*args, env=None):
    base = {"PATH": os.environ["PATH"]}
    return subprocess.run([sys.executable, str(ROOT / "entrypoint.py"), *args], env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=30)


def test_print_command_outputs_one_json_array():
    result = run_entrypoint("--print-command", env={"ENGINE_TP_SIZE": "4", "PORT": "8001"})
    assert result.returncode == 0, result.stderr
    argv = json.loads(result.stdout)
    assert argv[:3] == list(command.ENGINE_LAUNCH_COMMAND)
    assert flags_after(argv, "--tp-size") == "4"
    # The guard owns the public port; the engine listens on loopback only.
    assert flags_after(argv, "--host") == "127.0.0.1" and flags_after(argv, "--port") == "30000"


def test_print_command_config_error_exit_code_and_message():
    result = run_entrypoint("--print-command", env={"ENGINE_TP_SIZ": "4"})
    assert result.returncode == settings.EXIT_CONFIG_ERROR
    assert result.stdout == "" and "ENGINE_TP_SIZ" in result.stderr


def test_print_command_never_shows_secrets(tmp_path):
    (tmp_path / "key").write_text("canary-7f3a")
    result = run_entrypoint("--print-command", "--served-model-name", "llama",
                            env={"ENGINE_API_KEY_FILE": str(tmp_path / "key"), "HF_TOKEN": "hf_canary"})
    assert result.returncode == 0
    assert "canary" not in result.stdout + result.stderr


def test_unknown_bundle_setting_is_an_error():
    result = run_entrypoint("--print-command", env={"BUNDLE_PREFLIGT": "0"})
    assert result.returncode == 78 and "BUNDLE_PREFLIGHT" in result.stderr


def test_config_error_in_run_mode_starts_nothing():
    result = run_entrypoint(env={"ENGINE_SPECULATIVE_ALGORITHM": "EAGLE"})
    assert result.returncode == 78 and "draft model" in result.stderr
    assert "starting engine" not in result.stderr


def test_list_env_covers_every_flag(catalogue):
    result = run_entrypoint("--list-env")
    names = {line.split("\t")[0] for line in result.stdout.splitlines()}
    assert {sglang_flags.env_name_for_option(o) for f in catalogue.flags for o in f.options} <= names


def test_healthcheck_fails_when_nothing_listens():
    result = run_entrypoint("--healthcheck", env={"PORT": "9", "BUNDLE_HEALTHCHECK_TIMEOUT": "2"})
    assert result.returncode == 1


def test_kubernetes_service_links_are_not_mistaken_for_flags():
    links = {"ENGINE_PORT": "tcp://10.0.0.1:8000", "ENGINE_SERVICE_HOST": "10.0.0.1",
             "ENGINE_SERVICE_PORT": "8000", "ENGINE_PORT_8000_TCP": "tcp://10.0.0.1:8000",
             "ENGINE_PORT_8000_TCP_ADDR": "10.0.0.1", "ENGINE_PORT_8000_TCP_PROTO": "tcp"}
    assert argv_for(links) == argv_for({})
    assert flags_after(argv_for({"ENGINE_PORT": "9000"}), "--port") == "9000"


@pytest.mark.parametrize("name", ["ENGINE_SSL_KEYFILE", "ENGINE_SSL_CERTFILE", "ENGINE_SSL_KEYFILE_PASSWORD",
                                  "ENGINE_FASTAPI_ROOT_PATH", "ENGINE_CONFIG"])
def test_flags_that_would_bypass_or_break_the_guard_are_refused(name):
    with pytest.raises(ConfigError, match=f"{name}: --.* is not supported by the bundle"):
        argv_for({name: "/x"})


def test_compressed_tensors_fp8_checkpoint_is_recognised(tmp_path):
    # The shape of RedHatAI's compressed-tensors FP8 config.json: FP8 appears only as 8-bit floats.
    config = {"num_hidden_layers": 80, "hidden_size": 8192, "intermediate_size": 28672,
              "num_attention_heads": 64, "num_key_value_heads": 8, "vocab_size": 128256,
              "max_position_embeddings": 131072,
              "quantization_config": {"quant_method": "compressed-tensors", "format": "float-quantized",
                                      "config_groups": {"group_0": {"targets": ["Linear"],
                                          "weights": {"num_bits": 8, "type": "float", "strategy": "tensor"},
                                          "input_activations": {"num_bits": 8, "type": "float"}}}}}
    shape = memory.shape_from_config(config)
    assert shape.weight_format == "fp8"
    plan = memory.plan_memory("m", shape, {"tp_size": 1}, 143771 / 1024)
    assert plan.fits and round(plan.weights_gib, 1) == 67.7


def test_print_command_runs_preflight_only_when_asked():
    assert run_entrypoint("--print-command").returncode == 0
    asked = run_entrypoint("--print-command", env={"BUNDLE_PREFLIGHT": "1"})
    assert asked.returncode == 78 and "no GPU visible" in asked.stderr


def find_python(name: str):
    """A working interpreter called `name`: on PATH, or one of pyenv's (whose shims may refuse)."""
    import glob
    import shutil
    for candidate in [shutil.which(name), *sorted(glob.glob(f"/root/.pyenv/versions/*/bin/{name}"))]:
        if candidate and subprocess.run([candidate, "-c", "pass"], capture_output=True).returncode == 0:
            return candidate
    return None


@pytest.mark.parametrize("python", ["python3.11", "python3.12"])
def test_runs_on_the_image_and_test_pythons(python):
    """The image's Python is 3.12, the tests' 3.11: the entrypoint and guard must work on both."""
    interpreter = find_python(python)
    if interpreter is None:
        pytest.skip(f"{python} is not installed here")
    from bundle import render
    env = {"PATH": os.environ["PATH"], **render.resolve(render.load_data(), "h100x4", "latency").engine_env}
    there = subprocess.run([interpreter, str(ROOT / "entrypoint.py"), "--print-command"], env=env,
                           capture_output=True, text=True, timeout=30)
    here = run_entrypoint("--print-command", env=env)
    assert there.returncode == 0, there.stderr
    assert json.loads(there.stdout) == json.loads(here.stdout)
    guard_smoke = ("from launcher import guard; import urllib.request, urllib.error\n"
                   "g = guard.Guard('127.0.0.1', 0, '127.0.0.1', 9, api_key='k'); g.start()\n"
                   "try: urllib.request.urlopen(f'http://127.0.0.1:{g.port}/health', timeout=5)\n"
                   "except urllib.error.HTTPError as e: print(e.code)\n"
                   "g.stop()\n")
    result = subprocess.run([interpreter, "-c", guard_smoke], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.stdout.strip() == "503", result.stderr


# --- the engine's own keys (the second wall) ---------------------------------------------------

def test_engine_argv_ends_with_its_key_file_and_never_a_key(tmp_path):
    key = tmp_path / "api_key"
    key.write_text("canary-user-key\n")
    config = build_config({"ENGINE_API_KEY_FILE": str(key)}, [], sglang_flags.Catalogue.load())
    argv = config.engine_argv(DEFAULTS, "/dev/shm/x/engine-keys.yaml")
    assert argv[-6:] == ["--host", "127.0.0.1", "--port", "30000", "--config", "/dev/shm/x/engine-keys.yaml"]
    assert config.engine_argv(DEFAULTS)[-1] == command.ENGINE_KEY_FILE_PLACEHOLDER
    assert not [t for t in argv if "key" in t and t.startswith("--") and t != "--config"]
    assert "canary-user-key" not in " ".join(argv)


def test_engine_key_file_is_private_and_removed_with_its_folder():
    keys = credentials.EngineKeys.generate()
    path = supervise.write_engine_key_file(keys)
    try:
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
        assert keys.api_key in path.read_text() and keys.admin_api_key in path.read_text()
        assert keys.api_key != keys.admin_api_key and len(keys.api_key) == 64
    finally:
        supervise.remove_key_file(path)
    assert not path.parent.exists()


def test_engine_key_file_goes_once_the_engine_listens():
    path = supervise.write_engine_key_file(credentials.EngineKeys.generate())
    engine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        import socket
        with socket.create_server(("127.0.0.1", 0)) as listener:
            supervise.remove_key_file_once_listening(path, engine, listener.getsockname()[1])
        assert not path.exists()
    finally:
        engine.kill()
        engine.wait()


def test_engine_key_file_goes_when_the_engine_exits_without_listening():
    path = supervise.write_engine_key_file(credentials.EngineKeys.generate())
    engine = subprocess.Popen([sys.executable, "-c", "pass"])
    engine.wait()
    supervise.remove_key_file_once_listening(path, engine, 1)
    assert not path.parent.exists()


@pytest.mark.parametrize("value", ["0", "-5", "many"])
def test_guard_connection_cap_must_be_a_positive_integer(value):
    result = subprocess.run([sys.executable, str(ROOT / "entrypoint.py"), "--print-command"],
                            env={**os.environ, "BUNDLE_GUARD_MAX_CONNECTIONS": value},
                            capture_output=True, text=True)
    assert result.returncode == settings.EXIT_CONFIG_ERROR
    assert f"BUNDLE_GUARD_MAX_CONNECTIONS={value!r}" in result.stderr


def test_engine_http_stack_is_reported_and_an_old_starlette_warned_about():
    from importlib.metadata import PackageNotFoundError

    def versions(table):
        def version_of(name):
            if name not in table:
                raise PackageNotFoundError(name)
            return table[name]
        return version_of

    current = supervise.engine_http_stack(versions({"starlette": "1.10.0", "uvicorn": "0.54.0", "httptools": "0.9.0"}))
    assert current == ["engine HTTP stack: fastapi absent, starlette 1.10.0, uvicorn 0.54.0, httptools 0.9.0, "
                       "h11 absent, uvloop absent (uvicorn parses with httptools)"]
    old = supervise.engine_http_stack(versions({"starlette": "0.48.0", "uvicorn": "0.51.0"}))
    assert old[0].endswith("(uvicorn parses with h11)")
    assert "Starlette 0.48.0 is older than 1.0.1 (CVE-2026-48710)" in old[1]
    assert len(supervise.engine_http_stack(versions({"starlette": "1.0.1"}))) == 1
    assert len(supervise.engine_http_stack(versions({"starlette": "1.0.0"}))) == 2


def test_bundle_settings_object_has_one_typed_field_per_table_row():
    import dataclasses
    fields = {field.name: field.type for field in dataclasses.fields(settings.BundleSettings)}
    table = {settings.field_name(row.env): row.type.__name__ for row in settings.BUNDLE_SETTINGS}
    assert fields == table
    parsed = settings.BundleSettings.from_environ({"BUNDLE_ENGINE_PORT": "31000", "BUNDLE_PREFLIGHT": "off"})
    assert (parsed.engine_port, parsed.preflight, parsed.parse_check) == (31000, False, True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.engine_port = 1


# --- SGLang's short forms of the parallel sizes (issue 22, item 6) ----------------------------

def test_short_forms_sglang_reads_set_their_flag_written_in_full():
    """Seed readers type ENGINE_TP=4 (SGLang's docs write --tp 4): it sets --tp-size."""
    config = build_config({"ENGINE_TP": "4", "ENGINE_DP": "2"}, [], sglang_flags.Catalogue.load())
    assert flags_after(config.argv, "--tp-size") == "4" and flags_after(config.argv, "--dp-size") == "2"
    assert "--tp" not in config.argv and "--dp" not in config.argv
    assert (config.values["tp_size"], config.values["dp_size"]) == (4, 2)
    assert config.sources["tp_size"] == "ENGINE_TP"


def test_short_form_given_with_its_long_form_is_refused():
    with pytest.raises(ConfigError, match="^ENGINE_TP_SIZE and ENGINE_TP both set --tp-size; set only one$"):
        argv_for({"ENGINE_TP": "4", "ENGINE_TP_SIZE": "2"})


def test_short_form_sglang_refuses_as_ambiguous_names_the_long_form():
    with pytest.raises(ConfigError) as err:
        argv_for({"ENGINE_PP": "2"})
    assert str(err.value) == ("ENGINE_PP is not a setting: SGLang 0.5.23's parser refuses --pp as ambiguous "
                              "(--pp-async-batch-depth, --pp-max-micro-batch-size, --pp-size). "
                              "Set ENGINE_PP_SIZE for --pp-size")


def test_print_command_takes_engine_tp():
    result = run_entrypoint("--print-command", env={"ENGINE_TP": "4"})
    assert result.returncode == 0, result.stderr
    assert flags_after(json.loads(result.stdout), "--tp-size") == "4"
