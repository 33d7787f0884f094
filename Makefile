# toolcatalog: every target creates and uses its own virtual environment in .venv
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Material's banner about its successor is not a problem of this site's
MKDOCS := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml dev/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,docs]' -e ./dev
	touch $(STAMP)

.PHONY: venv
venv: $(STAMP) ## Create the virtual environment and install the package with test and docs extras

.PHONY: demo
demo: $(STAMP) ## Run the demo: emulated API server + demo MCP server + operator, no cluster needed
	$(BIN)/python -m toolcatalog_dev.demo

.PHONY: lint
lint: $(STAMP) ## ruff, mypy (the shipped package), the import-linter layer contracts, the docs site (strict)
	$(BIN)/ruff check operator dev tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(MKDOCS) build --strict --quiet

.PHONY: docs
docs: $(STAMP) ## Build the documentation site into site/ (strict: a broken link, page or snippet fails)
	$(MKDOCS) build --strict

.PHONY: docs-serve
docs-serve: $(STAMP) ## Serve the documentation site on http://127.0.0.1:8000, rebuilt on every change
	$(MKDOCS) serve --strict --dev-addr 127.0.0.1:8000

.PHONY: docs-gen
docs-gen: $(STAMP) ## Regenerate the reference pages from the code (CRDs, reasons, flags, metrics, plugin, cache schema)
	$(BIN)/python -m toolcatalog_dev.docgen

.PHONY: transcripts
transcripts: $(STAMP) ## Re-run the quick start on the sandbox and rewrite the docs' transcripts (TRANSCRIPT_ARGS=--real)
	$(BIN)/python -m toolcatalog_dev.transcripts $(TRANSCRIPT_ARGS)

.PHONY: test
test: lint toolhive-crds prometheus ## Lint, then run the whole test suite (unit, engine, end-to-end on the emulator)
	$(BIN)/pytest -q --ignore=tests/gateways $(PYTEST_ARGS)

.PHONY: test-cluster
test-cluster: $(STAMP) toolhive-crds ## Run the end-to-end tests against a real control plane (builds it once; needs Go)
	$(BIN)/pytest -q tests/e2e --backend=cluster $(PYTEST_ARGS)

.PHONY: controlplane
controlplane: ## Build (or find cached) etcd, kube-apiserver, kube-controller-manager, kubectl, kstatus
	bash test/controlplane/build.sh

.PHONY: toolhive
toolhive: ## Build ToolHive's proxy runner and operator from its Go module (cached) for the gateway tests
	bash test/gateways/toolhive/build.sh

.PHONY: toolhive-crds
toolhive-crds: ## Extract ToolHive's CRDs from its Go module into the cache (download only: seconds)
	bash test/gateways/toolhive/build.sh crds

.PHONY: contextforge
contextforge: ## Install IBM ContextForge (PyPI) into a virtual environment of its own in the cache
	PYTHON=$(PYTHON) bash test/gateways/contextforge/install.sh

.PHONY: test-gateways
test-gateways: $(STAMP) ## The gateway tier: real ToolHive and ContextForge (make controlplane toolhive contextforge first)
	$(BIN)/pytest -q tests/gateways $(PYTEST_ARGS)

.PHONY: cluster
cluster: $(STAMP) ## Start a real control plane on loopback with the CRDs, print its KUBECONFIG, until Ctrl-C
	$(BIN)/python -m toolcatalog_dev.controlplane

.PHONY: test-unit
test-unit: $(STAMP) ## Run only the unit and engine tests (seconds)
	$(BIN)/pytest -q tests/unit tests/engine $(PYTEST_ARGS)

.PHONY: run
run: $(STAMP) ## Run the operator against the cluster in KUBECONFIG (all namespaces)
	$(BIN)/toolcatalog run --all-namespaces $(RUN_ARGS)

.PHONY: install
install: ## Install the CRDs into the cluster in KUBECONFIG (kubectl)
	kubectl apply -f crds/

.PHONY: deploy
deploy: install ## Deploy the operator (namespace, RBAC, Deployment) with kustomize
	kubectl apply -k deploy/

# The operator under benchmark runs as the image installs it: runtime dependencies only (no kubernetes
# client, which kopf would import if it could), in a virtual environment of its own.
OPVENV  := .venv-operator
OPSTAMP := $(OPVENV)/.installed

$(OPSTAMP): pyproject.toml
	$(PYTHON) -m venv $(OPVENV)
	$(OPVENV)/bin/pip install --quiet --upgrade pip
	$(OPVENV)/bin/pip install --quiet -e .
	touch $(OPSTAMP)

.PHONY: bench
bench: $(STAMP) $(OPSTAMP) ## Benchmarks on the emulator and the real control plane (BENCH_ARGS=--quick: minutes)
	bash test/controlplane/build.sh > /dev/null
	bash test/gateways/toolhive/build.sh > /dev/null
	PYTHON=$(PYTHON) bash test/gateways/contextforge/install.sh > /dev/null
	BENCH_OPERATOR_PYTHON=$(OPVENV)/bin/python $(BIN)/python -m bench $(BENCH_ARGS)

.PHONY: bench-profile
bench-profile: $(STAMP) $(OPSTAMP) ## The benchmarks with py-spy profiles of the operator (bench/results/profiles)
	$(BIN)/pip install --quiet 'py-spy>=0.4,<0.5'
	bash test/controlplane/build.sh > /dev/null
	BENCH_OPERATOR_PYTHON=$(OPVENV)/bin/python $(BIN)/python -m bench --profile bench/results/profiles $(BENCH_ARGS)

.PHONY: clean
clean: ## Remove the virtual environment and caches
	rm -rf $(VENV) $(OPVENV) .pytest_cache build dist site operator/*.egg-info

.PHONY: image
image: ## Build the container image with podman (cached)
	bash test/image/build.sh

.PHONY: helm
helm: ## Build helm from the Go module proxy (cached) for the deploy tests, with cert-manager's CRDs
	bash test/controlplane/helm/build.sh

.PHONY: prometheus
prometheus: ## Install Prometheus and promtool (Debian's package, as root) for the monitoring tests
	bash test/prometheus/install.sh

.PHONY: sandbox
sandbox: $(STAMP) ## The demo kept running, with a KUBECONFIG for kubectl (SANDBOX_ARGS=--real: the real control plane)
	$(BIN)/toolcatalog sandbox $(SANDBOX_ARGS)
