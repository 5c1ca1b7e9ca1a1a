"""Behaviour tests for launcher/command.py, written to kill mutmut's survivors (docs/mutation.md).
Expected values are literals worked out by hand (flag names and defaults are SGLang 0.5.23's, as
its own parser declares them: tests/test_sglang_parser.py keeps the catalogue equal to it)."""
import pytest

from launcher import command
from launcher.command import build_config, check_conflicts, collect_arguments, collect_environment, \
    is_service_link
from launcher.settings import BUNDLE_SETTINGS, BundleSettings, ConfigError


def cfg(environ=None, args=()):
    return build_config(environ or {}, list(args), CATALOGUE)


@pytest.fixture(autouse=True, scope="module")
def _catalogue(catalogue):
    global CATALOGUE
    CATALOGUE = catalogue


def error(environ=None, args=()):
    with pytest.raises(ConfigError) as err:
        cfg(environ, args)
    return str(err.value)


# --- Kubernetes service links ------------------------------------------------------------------

@pytest.mark.parametrize("name, value, expected", [
    ("ENGINE_SERVICE_HOST", "10.0.0.1", True),
    ("ENGINE_SERVICE_PORT", "8000", True),
    ("ENGINE_SERVICE_PORT_HTTP", "8000", True),
    ("ENGINE_PORT_8000_TCP", "tcp://10.0.0.1:8000", True),
    ("ENGINE_PORT_8000_UDP_PROTO", "udp", True),
    ("ENGINE_PORT_53_SCTP_PORT", "53", True),
    ("ENGINE_PORT_8000_TCP_ADDR", "10.0.0.1", True),
    ("ENGINE_PORT", "tcp://10.0.0.1:8000", True),
    ("ENGINE_PORT", "udp://10.0.0.1:53", True),
    ("ENGINE_PORT", "sctp://10.0.0.1:53", True),
    ("ENGINE_PORT", "8000", False),
    ("ENGINE_PORT", "http://x", False),
    ("ENGINE_PORT_X_TCP", "tcp://x", False),
    ("ENGINE_PORT_8000_HTTP", "x", False),
    ("ENGINE_SERVICE_HOSTX", "x", False),
    ("XENGINE_SERVICE_HOST", "x", False),
    ("ENGINE_TP_SIZE", "tcp://x", False),
])
def test_service_links(name, value, expected):
    assert is_service_link(name, value) is expected


def test_service_links_are_ignored_not_refused():
    config = cfg({"ENGINE_SERVICE_HOST": "10.0.0.1", "ENGINE_PORT": "tcp://10.0.0.1:8000",
                  "ENGINE_PORT_8000_TCP_PORT": "8000"})
    assert config.argv == ["--model-path", "meta-llama/Llama-3.1-70B-Instruct", "--host", "0.0.0.0",
                           "--port", "8000"]


# --- the environment ---------------------------------------------------------------------------

def test_environment_flags_aliases_and_other_variables():
    chosen = collect_environment({"ENGINE_TP_SIZE": "4", "MODEL": "/models/x", "PORT": "9000", "HOME": "/root",
                                  "ENGINE_API_KEY": "k", "ENGINE_ADMIN_API_KEY_FILE": "/f"}, CATALOGUE)
    assert sorted(chosen) == ["model_path", "port", "tp_size"]
    assert chosen["tp_size"].tokens == ["--tp-size", "4"] and chosen["tp_size"].value == 4
    assert chosen["tp_size"].source == "ENGINE_TP_SIZE"
    assert chosen["model_path"].tokens == ["--model-path", "/models/x"] and chosen["model_path"].source == "MODEL"
    assert chosen["port"].tokens == ["--port", "9000"] and chosen["port"].value == 9000


def test_secret_variables_never_become_flags():
    chosen = collect_environment({"ENGINE_API_KEY": "k", "ENGINE_API_KEY_FILE": "/f", "ENGINE_ADMIN_API_KEY": "a",
                                  "ENGINE_ADMIN_API_KEY_FILE": "/g"}, CATALOGUE)
    assert chosen == {}


def test_unknown_engine_variable_is_refused_with_a_suggestion():
    message = error({"ENGINE_TP_SIZ": "4"})
    assert message.startswith("ENGINE_TP_SIZ is not a setting: no SGLang 0.5.23 flag is called --tp-siz.")
    assert "Did you mean ENGINE_TP_SIZE" in message


def test_unknown_engine_variable_without_a_close_name():
    assert error({"ENGINE_QQQQQQQQQQQQQQQQQQQQ": "1"}) == ("ENGINE_QQQQQQQQQQQQQQQQQQQQ is not a setting: no SGLang "
                                                          "0.5.23 flag is called --qqqqqqqqqqqqqqqqqqqq.")


def test_two_names_of_one_flag_are_refused():
    assert error({"ENGINE_TP_SIZE": "2", "ENGINE_TENSOR_PARALLEL_SIZE": "4"}) == \
        "ENGINE_TP_SIZE and ENGINE_TENSOR_PARALLEL_SIZE both set --tp-size; set only one"
    assert error({"MODEL": "a", "ENGINE_MODEL": "b"}) == ("MODEL and ENGINE_MODEL both set --model-path; set only one")


def test_alias_with_its_long_name_is_refused():
    assert error({"MODEL": "a", "ENGINE_MODEL_PATH": "b"}) == (
        "both MODEL and ENGINE_MODEL_PATH are set; MODEL is a short alias of ENGINE_MODEL_PATH, set only one")
    assert error({"PORT": "1", "ENGINE_PORT": "2"}).startswith("both PORT and ENGINE_PORT are set")
    assert cfg({"ENGINE_MODEL_PATH": "b"}).values["model_path"] == "b"
    assert cfg({"MODEL": "a"}).values["model_path"] == "a"
    assert cfg({"PORT": "9001"}).values["port"] == 9001


# --- container arguments -----------------------------------------------------------------------

def test_arguments_every_form():
    chosen = collect_arguments(["--tp-size", "4", "--port=9000", "--skip-server-warmup", "--no-enable-tf32-matmul",
                                "--numa-node", "0", "1", "--model-checksum", "--dp-size", "2",
                                "--uvicorn-access-log-exclude-prefixes"], CATALOGUE)
    assert chosen["tp_size"].tokens == ["--tp-size", "4"] and chosen["tp_size"].value == 4
    assert chosen["tp_size"].source == "argument --tp-size"
    assert chosen["port"].tokens == ["--port", "9000"] and chosen["port"].value == 9000
    assert chosen["skip_server_warmup"].tokens == ["--skip-server-warmup"] and chosen["skip_server_warmup"].value is True
    assert chosen["enable_tf32_matmul"].tokens == ["--no-enable-tf32-matmul"]
    assert chosen["enable_tf32_matmul"].value is False
    assert chosen["numa_node"].tokens == ["--numa-node", "0", "1"] and chosen["numa_node"].value == [0, 1]
    assert chosen["model_checksum"].tokens == ["--model-checksum"] and chosen["model_checksum"].value is None
    assert chosen["dp_size"].value == 2
    assert chosen["uvicorn_access_log_exclude_prefixes"].tokens == ["--uvicorn-access-log-exclude-prefixes"]
    assert chosen["uvicorn_access_log_exclude_prefixes"].value == []


def test_single_value_flag_takes_one_value_only():
    with pytest.raises(ConfigError) as err:
        collect_arguments(["--tp-size", "4", "8"], CATALOGUE)
    assert str(err.value).startswith("container argument '8' is not an SGLang 0.5.23 flag.")


def test_positive_negatable_is_true_and_inline_value_for_a_list():
    chosen = collect_arguments(["--enable-tf32-matmul", "--numa-node=3"], CATALOGUE)
    assert chosen["enable_tf32_matmul"].value is True and chosen["numa_node"].value == [3]
    assert chosen["numa_node"].tokens == ["--numa-node", "3"]


def test_unknown_argument_abbreviation_hint():
    with pytest.raises(ConfigError) as err:
        collect_arguments(["--tp"], CATALOGUE)
    assert str(err.value) == ("container argument '--tp' is not an SGLang 0.5.23 flag. It abbreviates --tp-size; "
                              "write the full option name.")


def test_unknown_argument_abbreviation_lists_at_most_four():
    with pytest.raises(ConfigError) as err:
        collect_arguments(["--enable-"], CATALOGUE)
    hint = str(err.value).split("It abbreviates ")[1].split("; write")[0]
    assert len(hint.split(", ")) == 4 and all(o.startswith("--enable-") for o in hint.split(", "))


def test_unknown_argument_suggestion_and_bare_word():
    with pytest.raises(ConfigError) as err:
        collect_arguments(["--tp-sise", "4"], CATALOGUE)
    assert "Did you mean --tp-size" in str(err.value) and "abbreviates" not in str(err.value)
    with pytest.raises(ConfigError) as err:
        collect_arguments(["tp-size"], CATALOGUE)
    assert str(err.value).startswith("container argument 'tp-size' is not an SGLang 0.5.23 flag.")
    assert "abbreviates" not in str(err.value)


@pytest.mark.parametrize("args, message", [
    (["--skip-server-warmup=yes"], "argument --skip-server-warmup takes no value (got 'yes')"),
    (["--no-enable-tf32-matmul=1"], "argument --no-enable-tf32-matmul takes no value (got '1')"),
    (["--numa-node"], "argument --numa-node expects at least one value"),
    (["--tp-size"], "argument --tp-size expects a value"),
    (["--tp-size", "--dp-size", "2"], "argument --tp-size expects a value"),
    (["--tp-size", "2", "--tp-size", "4"], "argument --tp-size is given twice (also as argument --tp-size)"),
    (["--tp-size", "2", "--tensor-parallel-size", "4"],
     "argument --tensor-parallel-size is given twice (also as argument --tp-size)"),
])
def test_argument_refusals(args, message):
    with pytest.raises(ConfigError) as err:
        collect_arguments(args, CATALOGUE)
    assert str(err.value) == message


def test_inline_value_keeps_every_equals_sign():
    chosen = collect_arguments(["--served-model-name=a=b", "--numa-node=1"], CATALOGUE)
    assert chosen["served_model_name"].tokens == ["--served-model-name", "a=b"]
    assert chosen["served_model_name"].value == "a=b"


def test_a_switch_does_not_swallow_the_next_word():
    with pytest.raises(ConfigError) as err:
        collect_arguments(["--skip-server-warmup", "extra"], CATALOGUE)
    assert str(err.value).startswith("container argument 'extra' is not an SGLang 0.5.23 flag.")


def test_bad_values_name_the_argument():
    with pytest.raises(ConfigError) as err:
        collect_arguments(["--tp-size", "abc"], CATALOGUE)
    assert str(err.value) == ("argument --tp-size='abc': --tp-size expects an integer (invalid literal for int() "
                              "with base 10: 'abc')")
    with pytest.raises(ConfigError) as err:
        collect_arguments(["--numa-node", "0", "x"], CATALOGUE)
    assert str(err.value) == ("argument --numa-node='x': --numa-node expects an integer (invalid literal for int() "
                              "with base 10: 'x')")


def test_a_single_dash_is_no_abbreviation():
    with pytest.raises(ConfigError) as err:
        collect_arguments(["-"], CATALOGUE)
    assert str(err.value).startswith("container argument '-' is not an SGLang 0.5.23 flag.")
    assert "abbreviates" not in str(err.value)


def test_empty_arguments():
    assert collect_arguments([], CATALOGUE) == {}


# --- build_config --------------------------------------------------------------------------------

def test_defaults_only():
    config = cfg()
    assert config.argv == ["--model-path", "meta-llama/Llama-3.1-70B-Instruct", "--host", "0.0.0.0", "--port", "8000"]
    assert config.values["port"] == 8000 and config.values["host"] == "0.0.0.0"
    assert config.values["tp_size"] == 1          # SGLang's own default, from the catalogue
    assert config.sources == {"model_path": "bundle default", "host": "bundle default", "port": "bundle default"}
    assert config.api_key is None and config.admin_api_key is None and config.warnings == []


def test_arguments_beat_environment_and_model_comes_first():
    config = cfg({"ENGINE_TP_SIZE": "2", "ENGINE_DP_SIZE": "1"}, ["--tp-size", "4", "--model-path", "/m"])
    assert config.argv[:2] == ["--model-path", "/m"]
    assert config.values["tp_size"] == 4 and config.sources["tp_size"] == "argument --tp-size"
    assert config.sources["dp_size"] == "ENGINE_DP_SIZE"
    assert "--tp-size" in config.argv and config.argv[config.argv.index("--tp-size") + 1] == "4"
    assert config.argv.count("--tp-size") == 1


def test_keys_come_from_the_environment_and_files(tmp_path):
    key = tmp_path / "admin"
    key.write_text("admin-secret\n")
    config = cfg({"ENGINE_API_KEY": "user-secret", "ENGINE_ADMIN_API_KEY_FILE": str(key)})
    assert config.api_key == "user-secret" and config.admin_api_key == "admin-secret"
    assert "user-secret" not in config.argv and "admin-secret" not in config.argv


@pytest.mark.parametrize("args", [["--api-key", "k"], ["--admin-api-key=k"]])
def test_secrets_on_the_command_line_are_refused(args):
    option = args[0].split("=")[0]
    env = "ENGINE_API_KEY" if option == "--api-key" else "ENGINE_ADMIN_API_KEY"
    assert error(args=args) == (f"argument {option}: a secret on the command line shows in `docker inspect` and "
                                f"`ps`; use {env}_FILE instead")


@pytest.mark.parametrize("option", sorted(command.REFUSED_FLAGS))
def test_refused_flags(option, catalogue):
    flag = catalogue.by_option[option]
    args = [option] if flag.kind != "value" else [option, "x"]
    assert error(args=args) == (f"argument {option}: {option} is not supported by the bundle: "
                                f"{command.REFUSED_FLAGS[option]}")


def test_refused_flag_from_the_environment():
    assert error({"ENGINE_GRPC_MODE": "1"}).startswith("ENGINE_GRPC_MODE: --grpc-mode is not supported by the bundle")
    # Even set false: the bundle owns the choice.
    assert error({"ENGINE_GRPC_MODE": "0"}).startswith("ENGINE_GRPC_MODE: --grpc-mode is not supported")


def test_deprecated_flag_warns_only_when_given():
    config = cfg(args=["--disable-cuda-graph"])
    assert config.warnings == ["argument --disable-cuda-graph: --disable-cuda-graph is deprecated in SGLang; use "
                               "--cuda-graph-backend-{decode,prefill}=disabled"]
    assert cfg({"ENGINE_DISABLE_CUDA_GRAPH": "false"}).warnings == []


def test_engine_argv_swaps_the_public_address_for_loopback():
    config = cfg(args=["--host=1.2.3.4", "--port", "9000", "--tp-size", "2"])
    settings = BundleSettings.from_environ({"BUNDLE_ENGINE_PORT": "31000"})
    assert config.engine_argv(settings) == ["python3", "-m", "sglang.launch_server", "--model-path",
                                            "meta-llama/Llama-3.1-70B-Instruct", "--tp-size", "2", "--host",
                                            "127.0.0.1", "--port", "31000", "--config",
                                            "<per-start engine key file>"]
    assert config.engine_argv(settings, "/run/k.yaml")[-1] == "/run/k.yaml"
    config = cfg(args=["--port=9000", "--host", "1.2.3.4"])
    assert config.engine_argv(settings)[3:5] == ["--model-path", "meta-llama/Llama-3.1-70B-Instruct"]
    assert config.engine_argv(settings).count("--host") == 1


def test_engine_argv_drops_inline_guard_flags_without_eating_the_next_token():
    config = command.EngineConfig(argv=["--host=1.2.3.4", "--tp-size", "2", "--port=9000=x", "--dp-size", "1",
                                        "--port", "9000", "--model-path", "/m"],
                                  values={}, sources={}, api_key=None, admin_api_key=None, warnings=[])
    settings = BundleSettings.from_environ({})
    assert config.engine_argv(settings, "/k") == ["python3", "-m", "sglang.launch_server", "--tp-size", "2",
                                                  "--dp-size", "1", "--model-path", "/m", "--host", "127.0.0.1",
                                                  "--port", "30000", "--config", "/k"]


# --- conflicts: both sides of every rule ---------------------------------------------------------

def test_speculative_needs_a_draft_model():
    message = error({"ENGINE_SPECULATIVE_ALGORITHM": "eagle3"})
    assert message == ("speculative decoding EAGLE3 needs a draft model (ENGINE_SPECULATIVE_ALGORITHM): set "
                       "ENGINE_SPECULATIVE_DRAFT_MODEL_PATH. Without it SGLang 0.5.23 loads the target model a second "
                       "time as its own draft and crashes after minutes (sglang issue #36528)")
    for algorithm in ("EAGLE", "NEXTN", "STANDALONE"):
        assert error({"ENGINE_SPECULATIVE_ALGORITHM": algorithm}).startswith(f"speculative decoding {algorithm} needs")
    ok = cfg({"ENGINE_SPECULATIVE_ALGORITHM": "EAGLE3", "ENGINE_SPECULATIVE_DRAFT_MODEL_PATH": "d",
              "ENGINE_MAX_RUNNING_REQUESTS": "8"})
    assert ok.warnings == []


def test_speculative_without_max_running_requests_warns():
    config = cfg({"ENGINE_SPECULATIVE_ALGORITHM": "EAGLE3", "ENGINE_SPECULATIVE_DRAFT_MODEL_PATH": "d"})
    assert config.warnings == ["speculative decoding without ENGINE_MAX_RUNNING_REQUESTS: SGLang caps concurrency "
                               "at 48 on its own; set it explicitly"]


def test_speculative_steps_are_all_or_nothing():
    base = {"ENGINE_SPECULATIVE_ALGORITHM": "EAGLE3", "ENGINE_SPECULATIVE_DRAFT_MODEL_PATH": "d",
            "ENGINE_MAX_RUNNING_REQUESTS": "8"}
    assert error({**base, "ENGINE_SPECULATIVE_NUM_STEPS": "3"}) == (
        "speculative step parameters are all-or-nothing: ENGINE_SPECULATIVE_NUM_STEPS set but "
        "ENGINE_SPECULATIVE_EAGLE_TOPK, ENGINE_SPECULATIVE_NUM_DRAFT_TOKENS not (SGLang asserts after loading)")
    assert error({**base, "ENGINE_SPECULATIVE_NUM_STEPS": "3", "ENGINE_SPECULATIVE_EAGLE_TOPK": "1"}).endswith(
        "but ENGINE_SPECULATIVE_NUM_DRAFT_TOKENS not (SGLang asserts after loading)")
    full = {**base, "ENGINE_SPECULATIVE_NUM_STEPS": "3", "ENGINE_SPECULATIVE_EAGLE_TOPK": "1",
            "ENGINE_SPECULATIVE_NUM_DRAFT_TOKENS": "4"}
    assert cfg(full).values["speculative_num_draft_tokens"] == 4
    steps = {k: v for k, v in full.items() if "NUM_STEPS" in k or "TOPK" in k or "DRAFT_TOKENS" in k}
    assert error(steps) == ("ENGINE_SPECULATIVE_NUM_STEPS, ENGINE_SPECULATIVE_EAGLE_TOPK, "
                            "ENGINE_SPECULATIVE_NUM_DRAFT_TOKENS set without ENGINE_SPECULATIVE_ALGORITHM")


def test_dp_across_nodes():
    assert error({"ENGINE_NNODES": "2", "ENGINE_DP_SIZE": "2", "ENGINE_TP_SIZE": "2"}) == (
        "data-parallel replicas across nodes are not supported by SGLang (ENGINE_DP_SIZE, ENGINE_NNODES): use "
        "attention DP, or one deployment per node")
    assert cfg({"ENGINE_NNODES": "2", "ENGINE_TP_SIZE": "2"}).values["nnodes"] == 2
    assert cfg({"ENGINE_DP_SIZE": "2"}).values["dp_size"] == 2


def test_tp_times_pp_divisible_by_nodes():
    assert error({"ENGINE_NNODES": "2", "ENGINE_TP_SIZE": "3"}) == (
        "tp_size*pp_size = 3*1 = 3 is not divisible by nnodes = 2 (ENGINE_TP_SIZE, ENGINE_NNODES)")
    assert error({"ENGINE_NNODES": "4", "ENGINE_TP_SIZE": "2", "ENGINE_PP_SIZE": "3"}) == (
        "tp_size*pp_size = 2*3 = 6 is not divisible by nnodes = 4 (ENGINE_TP_SIZE, ENGINE_PP_SIZE, ENGINE_NNODES)")
    assert cfg({"ENGINE_NNODES": "4", "ENGINE_TP_SIZE": "2", "ENGINE_PP_SIZE": "2"}).values["pp_size"] == 2
    assert cfg({"ENGINE_NNODES": "2", "ENGINE_TP_SIZE": "1", "ENGINE_PP_SIZE": "2"}).values["nnodes"] == 2


def test_attention_dp():
    assert error({"ENGINE_ATTN_DP_SIZE": "2", "ENGINE_DP_SIZE": "2", "ENGINE_TP_SIZE": "4"}) == (
        "attention DP (ENGINE_ATTN_DP_SIZE) cannot be combined with dp_size > 1 (ENGINE_DP_SIZE)")
    assert error({"ENGINE_ATTN_DP_SIZE": "3", "ENGINE_TP_SIZE": "4"}) == (
        "attn_dp_size 3 must divide tp_size 4 (ENGINE_ATTN_DP_SIZE, ENGINE_TP_SIZE)")
    assert error({"ENGINE_ATTN_DP_SIZE": "2"}) == "attn_dp_size 2 must divide tp_size 1 (ENGINE_ATTN_DP_SIZE)"
    assert cfg({"ENGINE_ATTN_DP_SIZE": "2", "ENGINE_TP_SIZE": "4"}).values["attn_dp_size"] == 2
    assert cfg({"ENGINE_ATTN_DP_SIZE": "1", "ENGINE_DP_SIZE": "2"}).values["dp_size"] == 2


def test_enable_dp_attention_without_dp_warns():
    assert cfg({"ENGINE_ENABLE_DP_ATTENTION": "1"}).warnings == [
        "--enable-dp-attention without a dp size does nothing; use ENGINE_ATTN_DP_SIZE",
        "ENGINE_ENABLE_DP_ATTENTION: --enable-dp-attention is deprecated in SGLang; use --attn-dp-size <dp-size>"][::-1]
    assert cfg({"ENGINE_ENABLE_DP_ATTENTION": "1", "ENGINE_DP_SIZE": "2"}).warnings == [
        "ENGINE_ENABLE_DP_ATTENTION: --enable-dp-attention is deprecated in SGLang; use --attn-dp-size <dp-size>"]


def test_tokenizer_workers():
    assert error({"ENGINE_TOKENIZER_WORKER_NUM": "2"}) == (
        "tokenizer_worker_num > 1 (ENGINE_TOKENIZER_WORKER_NUM) is not supported by the bundle: SGLang runs several "
        "tokenizer workers only without an API key, and the engine's own per-start key is what refuses requests "
        "that did not come through the guard. Scale with dp_size or replicas instead")
    assert cfg({"ENGINE_TOKENIZER_WORKER_NUM": "1"}).values["tokenizer_worker_num"] == 1


def test_served_model_name_colon():
    assert error({"ENGINE_SERVED_MODEL_NAME": "a:b"}) == (
        "served model name 'a:b' must not contain ':' (ENGINE_SERVED_MODEL_NAME)")
    assert cfg({"ENGINE_SERVED_MODEL_NAME": "a-b"}).values["served_model_name"] == "a-b"


def test_origin_says_defaults_when_nothing_was_given():
    config = cfg()
    config.values["attn_dp_size"] = 2
    with pytest.raises(ConfigError) as err:
        check_conflicts(config)
    assert str(err.value) == "attn_dp_size 2 must divide tp_size 1 (defaults)"


def bare(**values):
    return command.EngineConfig(argv=[], values=values, sources={}, api_key=None, admin_api_key=None, warnings=[])


def test_missing_sizes_count_as_one():
    check_conflicts(bare())                          # nothing set: accepted, no warning
    config = bare(enable_dp_attention=True)
    check_conflicts(config)
    assert config.warnings == ["--enable-dp-attention without a dp size does nothing; use ENGINE_ATTN_DP_SIZE"]
    with pytest.raises(ConfigError) as err:
        check_conflicts(bare(nnodes=2))
    assert str(err.value) == "tp_size*pp_size = 1*1 = 1 is not divisible by nnodes = 2 (defaults)"
    with pytest.raises(ConfigError) as err:
        check_conflicts(bare(attn_dp_size=2))
    assert str(err.value) == "attn_dp_size 2 must divide tp_size 1 (defaults)"
    check_conflicts(bare(nnodes=None, tp_size=None, pp_size=None, dp_size=None, attn_dp_size=None))


# --- --list-env ------------------------------------------------------------------------------------

def test_environment_reference_rows(catalogue):
    lines = command.environment_reference(catalogue).split("\n")
    assert lines[0] == "ENV\tFLAG / MEANING\tTYPE\tDEFAULT"
    rows = {line.split("\t")[0]: line.split("\t") for line in lines[1:]}
    assert rows["BUNDLE_ENGINE_PORT"][2:] == ["int", "30000"]
    assert rows["MODEL"] == ["MODEL", "alias of ENGINE_MODEL_PATH", "", "meta-llama/Llama-3.1-70B-Instruct"]
    assert rows["PORT"] == ["PORT", "alias of ENGINE_PORT", "", "8000"]
    assert rows["HF_TOKEN / HF_TOKEN_FILE"] == ["HF_TOKEN / HF_TOKEN_FILE", "secret: the value, or a file holding it",
                                                "secret", ""]
    assert rows["ENGINE_TP_SIZE"] == ["ENGINE_TP_SIZE", "--tp-size", "int", "1"]
    assert rows["ENGINE_TENSOR_PARALLEL_SIZE"] == ["ENGINE_TENSOR_PARALLEL_SIZE", "--tensor-parallel-size", "int", "1"]
    assert rows["ENGINE_PORT"] == ["ENGINE_PORT", "--port", "int", "8000"]
    assert rows["ENGINE_HOST"] == ["ENGINE_HOST", "--host", "str", "0.0.0.0"]
    assert rows["ENGINE_SKIP_SERVER_WARMUP"] == ["ENGINE_SKIP_SERVER_WARMUP", "--skip-server-warmup", "bool", "False"]
    assert rows["ENGINE_NUMA_NODE"] == ["ENGINE_NUMA_NODE", "--numa-node", "list of int", ""]
    assert rows["ENGINE_NO_ENABLE_TF32_MATMUL"][2] == "bool"
    assert rows["ENGINE_UVICORN_ACCESS_LOG_EXCLUDE_PREFIXES"][2:] == ["list of str", "[]"]
    assert rows["ENGINE_LORA_PATHS"][2:] == ["list of str", ""]
    # a header, one row per BUNDLE_* setting, the two aliases, the three secrets, one per option
    assert len(lines) == 1 + len(BUNDLE_SETTINGS) + 2 + 3 + sum(len(f.options) for f in catalogue.flags)
    assert [line.split("\t")[0] for line in lines[1:1 + len(BUNDLE_SETTINGS)]] == [s.env for s in BUNDLE_SETTINGS]
