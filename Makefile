# Llama 3.1 70B Instruct on SGLang. `make help` lists the targets.
HARDWARE ?=
PRESET ?= basic
GPUS ?=
PORT ?= 8000
BIND_ADDRESS ?=
API_KEY_FILE ?=
ADMIN_API_KEY_FILE ?=
ENV_FILE ?=
ALLOW_NO_API_KEY ?=
LORA_DIR ?=
SECRETS_DIR ?=
OVERRIDE ?=
BASE_IMAGE ?=
OUT ?=
PYTEST_ARGS ?=

VENV ?= .venv
PY := $(VENV)/bin/python
DEPLOYED := deploy/port-$(PORT)/docker-compose.yml
export HARDWARE PRESET GPUS PORT BIND_ADDRESS API_KEY_FILE ADMIN_API_KEY_FILE ALLOW_NO_API_KEY LORA_DIR SECRETS_DIR ENV_FILE OVERRIDE BASE_IMAGE

.DEFAULT_GOAL := help
.PHONY: help presets render deploy down logs status bench eval test test-gpu provision compose-file readme catalogue

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

# Created once for the host-side tools; `make provision` makes a fuller one for the tests.
# Its output goes to stderr: `make presets` keeps stdout for the pairs.
$(PY):
	@echo "creating $(VENV) for the host-side tools" >&2
	@python3 -m venv $(VENV) >&2 && $(PY) -m pip install --quiet -r requirements.txt >&2

presets: | $(PY) ## print every renderable "HARDWARE PRESET" pair
	@$(PY) -m bundle.render presets

render: | $(PY) ## write one compose file: HARDWARE= PRESET= OUT= [GPUS= PORT= BIND_ADDRESS= API_KEY_FILE=]
	@test -n "$(HARDWARE)" -a -n "$(OUT)" || { echo "make render needs HARDWARE=, PRESET= and OUT=" >&2; exit 2; }
	@$(PY) -m bundle.render render --hardware "$(HARDWARE)" --preset "$(PRESET)" --out "$(OUT)" \
	  $(if $(GPUS),--gpus "$(GPUS)") $(if $(filter-out 8000,$(PORT)),--port "$(PORT)") \
	  $(if $(BIND_ADDRESS),--bind-address "$(BIND_ADDRESS)") $(if $(API_KEY_FILE),--api-key-file "$(API_KEY_FILE)") \
	  $(if $(filter-out 0,$(ALLOW_NO_API_KEY)),--allow-no-api-key) $(if $(LORA_DIR),--lora-dir "$(LORA_DIR)") \
	  $(if $(SECRETS_DIR),--secrets-dir "$(SECRETS_DIR)") $(if $(ADMIN_API_KEY_FILE),--admin-api-key-file "$(ADMIN_API_KEY_FILE)") \
	  $(if $(ENV_FILE),--env-file "$(ENV_FILE)") $(if $(BASE_IMAGE),--base-image "$(BASE_IMAGE)")

deploy: | $(PY) ## render, validate, start and wait until ready: [HARDWARE=] PRESET= [GPUS= PORT=]
	@$(PY) -m bundle.deploy

down: ## stop and remove the deployment on PORT
	docker compose -f $(DEPLOYED) $(foreach o,$(subst $(comma), ,$(OVERRIDE)),-f $(o)) down

logs: ## follow the engine's log
	docker compose -f $(DEPLOYED) logs -f --tail 200 engine

status: ## container state and health of the deployment on PORT
	@docker compose -f $(DEPLOYED) ps
	@curl -fsS -o /dev/null -w "readiness /ready: HTTP %{http_code}\n" http://127.0.0.1:$(PORT)/ready || true

# bench/eval run SGLang's own tools inside the engine container, through the guard on the
# container's loopback: the engine itself answers only its per-start key, and this measures what
# clients get. The deployment's API key, if any, is read there from its secret file.
BENCH_ARGS ?= --backend sglang --num-prompts 100
EVAL_ARGS ?= --num-questions 200
IN_ENGINE = docker compose -f $(DEPLOYED) exec -T engine sh -c
AS_CLIENT = cd /tmp && GUARD_PORT=$${ENGINE_PORT:-$${PORT:-8000}} && \
  if [ -n "$${ENGINE_API_KEY_FILE:-}" ]; then OPENAI_API_KEY=$$(cat "$$ENGINE_API_KEY_FILE"); export OPENAI_API_KEY; fi

bench: ## the seed's speed benchmark (sglang.bench_serving) against the deployment on PORT
	$(IN_ENGINE) '$(AS_CLIENT) && python3 -m sglang.bench_serving --host 127.0.0.1 --port $$GUARD_PORT $(BENCH_ARGS)'

eval: ## the seed's accuracy run (GSM8K, 200 questions) against the deployment on PORT
	$(IN_ENGINE) '$(AS_CLIENT) && python3 - --port $$GUARD_PORT $(EVAL_ARGS)' < tools/few_shot_gsm8k_with_key.py

compose-file: | $(PY) ## regenerate the top-level docker-compose.yml (h100x4, basic)
	$(PY) -m bundle.render render --hardware h100x4 --preset basic --out docker-compose.yml

readme: | $(PY) ## regenerate the hardware/preset table in README.md
	$(PY) -m bundle.readme

catalogue: ## regenerate sglang_flags.json from the installed SGLang (needs the test venv)
	$(PY) tools/gen_flag_catalogue.py > sglang_flags.json.new && mv sglang_flags.json.new sglang_flags.json

provision: ## developers/CI: Docker engine, Compose v2, test venv, local test images (no registry)
	bash .ci/provision

test: ## the whole suite: unit, real SGLang parser, real Compose, containers over the CPU stand-in
	$(PY) -m pytest $(PYTEST_ARGS)

test-gpu: ## the same suite against the real image and model on a GPU host
	BUNDLE_TEST_TARGET=gpu $(PY) -m pytest $(PYTEST_ARGS)

comma := ,
