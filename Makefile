# Llama 3.1 70B Instruct on SGLang. `make help` lists the targets, `make options` the variables.
# The variables of render/deploy/down/... (HARDWARE=, PRESET=, PORT=, GPUS=, ...) are declared
# once, in bundle/options.py: make exports the ones given on its command line to the environment,
# where bundle/render.py and bundle/deploy.py read them. None is declared here.
PYTEST_ARGS ?=
VENV ?= .venv
PY := $(VENV)/bin/python
# The offline kit `make offline-kit` writes (docs/day-two.md#air-gapped-hosts): the venv is made
# from its wheels when it is there.
KIT ?= offline-kit

.DEFAULT_GOAL := help
.PHONY: help options presets render hosts deploy down logs status bench bench-compare bench-settings eval test test-unit test-gpu provision compose-file readme catalogue routes monitoring generate

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

options: | $(PY) ## list the variables (HARDWARE=, PRESET=, PORT=, ...): flag, default, help
	@$(PY) -m bundle.options

# Created once for the host-side tools; `make provision` makes a fuller one for the tests. From
# the offline kit's wheels with no index when $(KIT)/wheels/host exists (air-gapped hosts:
# `make offline-kit` on a connected machine), else from the package index; a failure is one line
# with the fix. Its output goes to stderr: `make presets` keeps stdout for the pairs.
$(PY):
	@python3 -m tools.offline_kit venv "$(VENV)" "$(KIT)" >&2

# docs/day-two.md#air-gapped-hosts. KIT_PYTHON=/KIT_PLATFORM= target another host than this one.
.PHONY: offline-kit
offline-kit: | $(PY) ## on a connected machine: the wheels an air-gapped host needs, into OUT=offline-kit [KIT_PYTHON=3.11 KIT_PLATFORM=...]
	@$(PY) -m tools.offline_kit build --kit "$(KIT)"

presets: | $(PY) ## print every renderable "HARDWARE PRESET" pair
	@$(PY) -m bundle.render presets

render: | $(PY) ## write one compose file: HARDWARE= [PRESET=] OUT= [GPUS= PORT= ...: make options]
	@$(PY) -m bundle.render render

# Kubernetes (docs/kubernetes.md): the plain manifests of one pair, what `kubectl apply -f OUT` takes;
# the Kustomize base and overlays in k8s/ are `make k8s-tree`'s.
.PHONY: k8s k8s-tree
k8s: | $(PY) ## write one pair's Kubernetes manifests into a folder: HARDWARE= [PRESET= REPLICAS= NODES=] OUT=dir
	@$(PY) -m bundle.k8s render

k8s-tree: | $(PY) ## regenerate the Kustomize base and per-pair overlays in k8s/
	@$(PY) -m bundle.k8s tree >/dev/null

hosts: | $(PY) ## compose files for engines on several hosts: INVENTORY=inventory.yml OUT=deploy/hosts
	@$(PY) -m bundle.inventory

.PHONY: api-key
api-key: | $(PY) ## a new random API key in a mode-600 file, never printed: [API_KEY_FILE=secrets/api_key]
	@$(PY) -m bundle.keys

.PHONY: doctor download
doctor: | $(PY) ## check this host for the deployment, one line per check with the fix: [HARDWARE= PRESET= ... ONLINE=1]
	@$(PY) -m bundle.doctor

download: | $(PY) ## the preset's checkpoint (+ EAGLE3 draft) into HF_CACHE, for HF_HUB_OFFLINE=1: [HARDWARE= PRESET=]
	@$(PY) -m bundle.download

deploy: | $(PY) ## render, validate, start and wait until ready: [HARDWARE=] [PRESET= GPUS= PORT= ...]
	@$(PY) -m bundle.deploy

# `bundle.deploy compose ARGS` runs docker compose -f deploy/port-$PORT/docker-compose.yml
# [-f each OVERRIDE] ARGS, for the deployment `make deploy` made on the same PORT=.
COMPOSE = $(PY) -m bundle.deploy compose

down: | $(PY) ## stop and remove the deployment on PORT
	@$(COMPOSE) down

logs: | $(PY) ## follow the logs of every service (the engine; the engines and the gateway with REPLICAS=)
	@$(COMPOSE) logs -f --tail 200

status: | $(PY) ## container state and health of the deployment on PORT
	@$(PY) -m bundle.deploy status

# bench/eval run SGLang's own tools (sglang.bench_serving, sglang.test.few_shot_gsm8k) against the
# deployment on PORT=, through its guard with its API key: inside the engine container (the image
# has them), or on this host with BENCH_CLIENT=/EVAL_CLIENT=. Results land in results/<time>-<hardware>-<preset>/
# with a side-by-side table against the seed's figures. Their variables (BENCH_*, EVAL_*, RESULTS_DIR)
# are declared with the others in bundle/options.py: `make bench-settings` lists just them.
bench: | $(PY) ## the seed's speed run vs its table: [BENCH_DATASET=random-ids BENCH_CONCURRENCY=1,8,32 ...]
	@$(PY) -m bundle.bench run

bench-compare: | $(PY) ## results side by side: RESULTS="results/a results/b" [CHART=chart.png]
	@$(PY) -m bundle.bench compare $(RESULTS) $(if $(CHART),--chart $(CHART))

bench-settings: | $(PY) ## the BENCH_*/EVAL_* variables of make bench and make eval
	@$(PY) -m bundle.bench settings && $(PY) -m bundle.evaluate settings

eval: | $(PY) ## GSM8K 200 questions 5-shot vs the seed's 0.935 and SGLang's threshold: [EVAL_DATA=test.jsonl]
	@$(PY) -m bundle.evaluate run

compose-file: | $(PY) ## regenerate the top-level docker-compose.yml (h100x4, basic)
	$(PY) -m bundle.render compose-file

readme: | $(PY) ## regenerate the hardware/preset table in README.md
	$(PY) -m bundle.readme

catalogue: ## regenerate launcher/sglang_flags.json from the installed SGLang (needs the test venv)
	$(PY) tools/gen_flag_catalogue.py > launcher/sglang_flags.json.new && mv launcher/sglang_flags.json.new launcher/sglang_flags.json

routes: ## regenerate launcher/sglang_routes.json, the guard's admin routes, from the installed SGLang's source
	$(PY) tools/gen_sglang_routes.py > launcher/sglang_routes.json.new && mv launcher/sglang_routes.json.new launcher/sglang_routes.json

monitoring: | $(PY) ## regenerate the Grafana dashboard, alert rules and data source from monitoring/queries.yaml
	$(PY) -m bundle.monitoring generate

.PHONY: dockerfiles
dockerfiles: | $(PY) ## regenerate Dockerfile and Dockerfile.gateway from presets/*.yaml and templates/
	$(PY) -m bundle.dockerfiles

.PHONY: schemas
schemas: | $(PY) ## regenerate schemas/*.schema.json, every data file's JSON Schema for editors, from bundle/schema.py
	$(PY) -m bundle.schema export

generate: catalogue routes compose-file readme k8s-tree monitoring dockerfiles schemas ## everything generated (CI checks a fresh run changes nothing)

provision: ## developers/CI: Docker engine, Compose v2, test venv, local test images (no registry)
	bash .ci/provision

test: ## the whole suite: unit, real SGLang parser, real Compose, containers over the CPU stand-in
	$(PY) -m pytest $(PYTEST_ARGS)

# Everything but the tests marked `docker` (pytest.ini: tests/e2e/ and the few that run a container).
# The daemon is pointed nowhere, so a test that needs it and is not marked fails here, not later in CI;
# `docker compose config` (client-only) still runs.
test-unit: ## the Docker-free tests: no Docker daemon needed (docs/testing.md)
	DOCKER_HOST=unix:///nonexistent $(PY) -m pytest -m "not docker" $(PYTEST_ARGS)

test-gpu: ## the same suite against the real image and model on a GPU host
	BUNDLE_TEST_TARGET=gpu $(PY) -m pytest $(PYTEST_ARGS)

.PHONY: lint
lint: ## ruff over the code and the tests (ruff.toml; CI's gate): findings are fixed, not silenced
	$(VENV)/bin/ruff check .

# Mutation testing of launcher/*.py, bundle/render.py and bundle/schema.py, judged by the fast
# Docker-free tests (setup.cfg [mutmut], tools/mutation.py, docs/mutation.md). Needs the test venv
# (`make provision`); installs the pinned mutmut into it when missing. MODULES= narrows the run.
.PHONY: mutation
mutation: | $(PY) ## mutation score killed/total + survivors: [MODULES="launcher/command.py ..."]
	@$(PY) -m pip show mutmut >/dev/null 2>&1 || $(PY) -m pip install --quiet -r requirements-mutation.txt
	$(PY) tools/mutation.py
