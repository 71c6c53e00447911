# SessionGate developer entry points. `make test` is what CI (.ci/run) runs on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SAM_VENV := .venv-sam
SCAN_VENV := .venv-scan
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0
# Tests never reach AWS: fake credentials keep boto3 from looking for real ones.
TEST_ENV := AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing \
            AWS_DEFAULT_REGION=us-east-1 AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null

.PHONY: setup setup-sam setup-scan scan lint typecheck validate slot-keys unit integration test demo console-demo scenarios bench bench-quick build deploy clean \
        smoke smoke-plan smoke-teardown

setup: $(VENV)/.installed
$(VENV)/.installed: requirements-dev.txt layers/sessiongate/requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@echo "Installing the development tools into $(VENV) (the first time takes a while)"
	$(BIN)/pip install -r requirements-dev.txt
	$(BIN)/pip install --quiet -e .
	touch $@

# aws-sam-cli pins boto3 exactly: it lives in its own venv.
setup-sam: $(SAM_VENV)/.installed
$(SAM_VENV)/.installed: requirements-sam.txt
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install --quiet --upgrade pip
	@echo "Installing the SAM CLI into $(SAM_VENV)"
	$(SAM_VENV)/bin/pip install -r requirements-sam.txt
	touch $@

# checkov pins an old boto3 and parliament its own deps: the scanners live in their own venv.
setup-scan: $(SCAN_VENV)/.installed
$(SCAN_VENV)/.installed: requirements-scan.txt
	$(PYTHON) -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/pip install --quiet --upgrade pip
	@echo "Installing the scanners (checkov, parliament) into $(SCAN_VENV)"
	$(SCAN_VENV)/bin/pip install -r requirements-scan.txt
	touch $@

# checkov on the SAM-transformed template, parliament on every IAM policy (skips carry reasons:
# .checkov.yaml, tools/lint_policies.py).
scan: setup setup-scan
	$(TEST_ENV) PYTHONPATH=layers/sessiongate:. $(BIN)/python -m tools.render_template build
	$(SCAN_VENV)/bin/checkov -f build/template.cfn.json --config-file .checkov.yaml
	$(SCAN_VENV)/bin/python tools/lint_policies.py build/policies

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

validate: setup setup-sam
	$(BIN)/cfn-lint template.yaml member/template.yaml member/identity-store.yaml
	$(SAM_VENV)/bin/sam validate --lint --template template.yaml

# Slot tag keys are written once, in sessiongate/core/slots.py; this writes every copy (the marked
# blocks of template.yaml and member/template.yaml, the key list of docs/scp-deny-slot-tags.json).
# tests/integration/test_slot_keys.py (part of `make test`) fails with the diff when one is stale.
slot-keys: setup
	PYTHONPATH=layers/sessiongate:. $(BIN)/python -m tools.slot_keys

# Fast tier: the pure core and both front doors on in-memory fakes (no moto, no template).
unit: setup
	$(TEST_ENV) $(BIN)/pytest -q tests/unit

# Slow tier: moto, the sandbox built from the template, the handlers as deployed, the opt-in
# real-account tests (skipped unless SESSIONGATE_AWS_TESTS=1).
# One pytest worker per core (pytest-xdist): each worker builds its own moto stacks.
integration: setup
	$(TEST_ENV) $(BIN)/pytest -q -n auto tests/integration tests/aws

# The README's main job: the original walkthrough, offline (moto + virtual clock), as a timeline.
demo: setup
	$(TEST_ENV) PYTHONPATH=layers/sessiongate:. $(BIN)/python -m sandbox demo

# The web console (`sessiongate console`) on a sandbox world: one local URL per person (alice and dave
# request, bob and carol approve); Ctrl-C stops it. `sandbox console --as bob` serves one person only.
console-demo: setup
	$(TEST_ENV) PYTHONPATH=layers/sessiongate:. $(BIN)/python -m sandbox console

# Every shipped scenario (also part of `make integration`): one result line per file; fails if any failed.
scenarios: setup
	@failed=0; for f in scenarios/*.yaml; do \
	  out=$$($(TEST_ENV) PYTHONPATH=layers/sessiongate:. $(BIN)/python -m sandbox run $$f 2>&1) || failed=1; \
	  echo "$$f: $$(tail -n 1 <<<"$$out")"; \
	done; exit $$failed

# Benchmarks (not part of the test run; README "Benchmarks" says what each figure measures): AWS calls per
# operation, cold start, SessionGate's own CPU per operation, capacity against AWS quotas, reconciler calls
# vs scale, the old design, and the moto soak (a correctness run: invariants, no rate headline).
BENCH := $(TEST_ENV) PYTHONPATH=layers/sessiongate:. $(BIN)/python -m
bench: setup
	$(BENCH) bench.api_calls; \
	$(BENCH) bench.cold_start --runs 5; \
	$(BENCH) bench.cpu --iterations 200; \
	$(BENCH) bench.capacity; \
	$(BENCH) bench.reconciler_scale; \
	$(BENCH) bench.old_design; \
	$(BENCH) bench.throughput --requests 2000 --workers 2

bench-quick: setup
	$(BENCH) bench.api_calls; \
	$(BENCH) bench.cold_start --runs 3; \
	$(BENCH) bench.cpu --iterations 50 --warmup 10; \
	$(BENCH) bench.capacity; \
	$(BENCH) bench.reconciler_scale; \
	$(BENCH) bench.old_design; \
	$(BENCH) bench.throughput --requests 1000 --workers 2

# The README's test command: every gate CI runs.
test: lint typecheck validate scan unit integration

build: setup-sam
	PYENV_VERSION=$${PYENV_VERSION:-3.11.7:3.12.1} $(SAM_VENV)/bin/sam build

deploy: build
	$(SAM_VENV)/bin/sam deploy --guided

# Opt-in end-to-end run on a real account (never part of `test`; README "Verify on your account").
# `smoke` refuses to start unless SESSIONGATE_SMOKE_ACCOUNT is the caller's account and
# SESSIONGATE_SMOKE_INSTANCE names a managed instance; it deletes what it created, also on failure.
SMOKE := PYTHONPATH=layers/sessiongate:. $(BIN)/python -m smoke --sam $(SAM_VENV)/bin/sam
smoke-plan: setup
	$(SMOKE) plan

smoke: setup setup-sam
	PYENV_VERSION=$${PYENV_VERSION:-3.11.7:3.12.1} $(SMOKE) run

smoke-teardown: setup setup-sam
	$(SMOKE) teardown

clean:
	rm -rf $(VENV) $(SAM_VENV) $(SCAN_VENV) build .aws-sam .pytest_cache .mypy_cache .ruff_cache
