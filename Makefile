# Every target creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAGE ?= dev

.PHONY: help run aws api worker test lint unit bench capacity loadtest chaos deploy remove package clean browser console screenshot checkov

help:
	@echo "make run       the whole system offline: embedded AWS, API and consumers"
	@echo "make test      lint and the full test suite"
	@echo "make aws | api | worker   one piece of the offline stack at a time"
	@echo "make console  the operator console on 127.0.0.1:\$$CONSOLE_PORT against URL (default the offline API)"
	@echo "make deploy | remove | package STAGE=dev   the AWS paths"
	@echo "make checkov  checkov's verdict on the packaged prod template (part of make test)"
	@echo "make loadtest | bench | chaos   load, benchmark and chaos tools"
	@echo "make capacity  docs/capacity.md's tables from the bench's figures"

$(VENV)/.installed: requirements.txt requirements-dev.txt client/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	# The Python client (client/, never in the Lambda zip), editable: taskctl and the tests import it.
	$(PY) -m pip install --quiet --disable-pip-version-check -e ./client
	touch $@

lint: $(VENV)/.installed
	$(PY) -m ruff check .

# Two workers (pytest-xdist), each taking whole files, so that a module's fixture (an offline
# stack, a browser) is built once; the stacks pick free ports, so files run side by side.
# The bounded chaos run, the long poll's half-second bound and the fan-in bench go last, alone: their kills, faults,
# patience and bound are sized for a machine they do not share with another stack.
# TEST_WORKERS=0 runs the rest in one process.
TEST_WORKERS ?= 2
ALONE_TESTS := tests/chaos/test_chaos_run.py tests/e2e/test_long_poll_offline.py tests/local/test_bench_fan_in.py
test: $(VENV)/.installed lint browser checkov
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(addprefix --ignore=,$(ALONE_TESTS))
	$(PY) -m pytest -q $(ALONE_TESTS)

# The browser tests drive Debian's Chromium (never a browser Playwright downloads). When it is
# missing and we run as root with apt-get (CI does), install it; otherwise those tests are skipped.
CHROMIUM ?= /usr/bin/chromium
browser:
	@if [ -x "$(CHROMIUM)" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the browser tests"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
			|| echo "could not install chromium: the browser tests will be skipped"; \
	else \
		echo "no $(CHROMIUM), and not root: the browser tests will be skipped"; \
	fi

unit: $(VENV)/.installed
	$(PY) -m pytest -q tests/unit tests/integration

# The offline stack (local/): stage `local`, loopback only, everything in memory.
# PORT, AWS_PORT, MAX_ATTEMPTS, BACKOFF_BASE_SECONDS, BACKOFF_MAX_SECONDS, DEFAULT_FAILURE_CHANCE
# and any other setting in the environment override the stage's values.
run: $(VENV)/.installed
	$(PY) -m local run

aws: $(VENV)/.installed
	$(PY) -m local aws

api: $(VENV)/.installed
	$(PY) -m local api

worker: $(VENV)/.installed
	$(PY) -m local worker

# The operator console (taskctl console) on 127.0.0.1:CONSOLE_PORT, forwarding to URL, signed when URL is not local.
CONSOLE_PORT ?= 8001
console: $(VENV)/.installed
	$(PY) -m taskctl --url $(or $(URL),http://127.0.0.1:$(or $(PORT),8000)) console --port $(CONSOLE_PORT)

# docs/console.png, taken in Chromium from a console over a fresh offline stack.
screenshot: $(VENV)/.installed browser
	CONSOLE_SCREENSHOT=docs/console.png $(PY) -m pytest -q tests/browser/test_console_e2e.py -k screenshot

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache .ruff_cache

# The AWS paths. `deploy` and `remove` need credentials and a region; infra.stack says which is missing.
BUILD ?= build
CHALICE := $(VENV)/bin/chalice
# The zip ships chalicelib's bytecode: Lambda's /var/task is read-only, so without it every cold start
# compiles the package from source (tools/bench/coldstart.py measures both). Checked-hash .pyc files
# stay valid through the zip, whose timestamps keep 2 s, and are refused as soon as a source changes.
# The old __pycache__ goes first: a removed module's bytecode would ship too.
BYTECODE := find chalicelib -name __pycache__ -type d -prune -exec rm -rf {} + && \
	$(PY) -m compileall -q -f --invalidation-mode checked-hash chalicelib

deploy: $(VENV)/.installed
	$(PY) -m infra.stack deploy $(STAGE)
	$(BYTECODE)
	$(CHALICE) deploy --stage $(STAGE)
	# Again, now that the API exists: the operator policy is scoped to its id.
	$(PY) -m infra.stack deploy $(STAGE)
	@echo "API URL: $$($(CHALICE) url --stage $(STAGE))"

remove: $(VENV)/.installed
	$(PY) -m infra.stack check $(STAGE)
	$(CHALICE) delete --stage $(STAGE)
	$(PY) -m infra.stack remove $(STAGE)

# One SAM template (functions, API, roles, queues, table) plus the zip, in $(BUILD)/$(STAGE).
# The template uses the deploying account's region, so any region will do for packaging.
package: $(VENV)/.installed
	$(PY) -m infra.stack merge-template $(STAGE) $(BUILD)/$(STAGE)/merge-template.json
	rm -rf $(BUILD)/$(STAGE)/package
	$(BYTECODE)
	AWS_DEFAULT_REGION=$${AWS_REGION:-$${AWS_DEFAULT_REGION:-us-east-1}} $(CHALICE) package --stage $(STAGE) \
		--merge-template $(BUILD)/$(STAGE)/merge-template.json $(BUILD)/$(STAGE)/package
	$(VENV)/bin/cfn-lint $(BUILD)/$(STAGE)/package/sam.json
	@echo "Deploy: aws cloudformation package --template-file $(BUILD)/$(STAGE)/package/sam.json" \
		"--s3-bucket <your bucket> --output-template-file $(BUILD)/$(STAGE)/packaged.yaml"
	@echo "        aws cloudformation deploy --template-file $(BUILD)/$(STAGE)/packaged.yaml" \
		"--stack-name taskproc-$(STAGE) --capabilities CAPABILITY_NAMED_IAM"
	@echo "API key: aws apigateway get-api-key --include-value --query value --output text --api-key" \
		"\$$(aws cloudformation describe-stacks --stack-name taskproc-$(STAGE)" \
		"--query \"Stacks[0].Outputs[?OutputKey=='ApiKeyId'].OutputValue\" --output text)"

# checkov, pinned, from its own virtual environment (its dependencies are not the project's),
# on the packaged prod template. Every check passes or is skipped in the template with its reason.
CHECKOV_VENV ?= .venv-checkov
CHECKOV_VERSION := 3.3.30
$(CHECKOV_VENV)/.installed:
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check checkov==$(CHECKOV_VERSION)
	touch $@

checkov: $(VENV)/.installed $(CHECKOV_VENV)/.installed
	@$(MAKE) --no-print-directory package STAGE=prod >/dev/null
	$(CHECKOV_VENV)/bin/checkov --file $(BUILD)/prod/package/sam.json --framework cloudformation \
		--skip-download --compact --quiet

# make loadtest                      starts the offline stack for the run
# make loadtest URL=https://...      against a running or deployed API
# make loadtest ARGS="--tasks 1000 --failure-chance 0.5 --chart out/load.png"
loadtest: $(VENV)/.installed
	$(PY) -m tools.load $(if $(URL),--url $(URL),--offline) $(ARGS)

bench: $(VENV)/.installed
	$(PY) -m tools.bench $(ARGS)
	$(PY) -m tools.bench.capacity
	$(PY) -m tools.bench.coldstart

# docs/capacity.md's tables, from the per-task figures `make bench` wrote to docs/bench-figures.json.
capacity: $(VENV)/.installed
	$(PY) -m tools.bench.capacity

# make chaos ARGS="--tasks 500 --kills 4 --fault-rate 0.08"   (python -m tools.chaos --help for the options)
chaos: $(VENV)/.installed
	$(PY) -m tools.chaos $(ARGS)

# Property-based fuzzing of the HTTP API from its own OpenAPI document; FUZZ_EXAMPLES per operation.
.PHONY: fuzz
fuzz: $(VENV)/.installed
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-300} $(PY) -m pytest -q -p no:cacheprovider tests/fuzz
