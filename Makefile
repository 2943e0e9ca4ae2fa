# Two commands do all set-up on a fresh machine: `make run` and `make test`.
# Every target installs what it needs first, idempotently.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
WORKERS ?= 6
PYTEST_ARGS ?=

.PHONY: run test deps assets servers images lint test-unit test-integration \
        test-integration-signalprocessing test-stress policy-test bench clean

# --- set-up ---------------------------------------------------------------

# -qq: errors only; setuptools' warning about editable installs is ten lines of nothing new.
$(VENV)/.installed: pyproject.toml
	@echo "==> Python virtualenv and dependencies ($(VENV))"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install -qq -e '.[dev]'
	@touch $@

deps: $(VENV)/.installed

assets: deps  ## kube-apiserver, etcd, OPA, helm built from the Go module proxy (cached)
	@echo "==> Go-built binaries (cached under $${KUBERNAUT_CACHE:-~/.cache/kubernaut-py})"
	$(PY) -m envtest assets --all

# The test node's packages are listed once, in envtest.node.NODE_PACKAGES. An empty list (the listing
# failed) is a usage error of `python -m debian_packages install`, so the target fails rather than skip them.
servers: deps  ## PostgreSQL, Redis and the test node's daemons from Debian packages, when missing
	@echo "==> PostgreSQL and Redis packages"
	$(PY) -m localservers install
	@echo "==> the test node's packages"
	$(PY) -m debian_packages install $$($(PY) -c 'from envtest.node import NODE_PACKAGES; print(*NODE_PACKAGES)')

images: assets servers  ## the test node's images, built with buildah from deploy/Containerfile (cached by content)
	@echo "==> container images for the test node (cached under $${KUBERNAUT_CACHE:-~/.cache/kubernaut-py}/images)"
	$(PY) -m envtest images

# --- the two commands -----------------------------------------------------

# NODE=1: the controller and DataStorage as Pods, the charts installed onto a one-node cluster.
NODE ?=
run: assets servers $(if $(NODE),images)
	$(PY) -m demo$(if $(NODE), --node)

test: assets servers images lint policy-test
	@echo "==> All tests: unit and integration, in parallel ($(WORKERS) workers)"
	$(PY) -m pytest -n $(WORKERS) $(PYTEST_ARGS)

# --- parts of the test run ------------------------------------------------

lint: deps
	@echo "==> ruff, mypy and import contracts"
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports --no-logo --no-cache

policy-test: assets
	@echo "==> Rego unit tests (opa test)"
	$$($(PY) -m envtest assets --tool opa --print-path) test policies/

test-unit: deps
	$(PY) -m pytest test/unit $(PYTEST_ARGS)

test-integration: assets servers
	$(PY) -m pytest -n $(WORKERS) test/integration $(PYTEST_ARGS)

test-integration-signalprocessing: assets servers
	$(PY) -m pytest -n $(WORKERS) test/integration/signalprocessing $(PYTEST_ARGS)

test-stress: assets servers  ## 20 full runs in random order; stops at the first failure
	$(PY) -m bench.stress --runs 20 --workers $(WORKERS)

# Two fresh clones of HEAD run `make test` at the same time, sharing only the build cache: proves that
# runs are isolated. assets and servers first, so the clones find the cache warm and the packages there.
ROUNDS ?= 10
.PHONY: test-stress-concurrent
test-stress-concurrent: assets servers  ## ROUNDS rounds of two concurrent full runs; stops at the first failure
	$(PY) -m bench.stress --concurrent-clones --rounds $(ROUNDS) --workers $(WORKERS)

# The maintained clients live in a virtualenv of their own: kopf would import one in every controller.
KUBECLIENTS_VENV := .venv-kubeclients
$(KUBECLIENTS_VENV)/.installed: pyproject.toml
	@echo "==> virtualenv with the maintained Kubernetes clients ($(KUBECLIENTS_VENV))"
	$(PYTHON) -m venv $(KUBECLIENTS_VENV)
	$(KUBECLIENTS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(KUBECLIENTS_VENV)/bin/python -m pip install -qq -e '.[kubeclients]'
	@touch $@

.PHONY: bench-kubeclient
bench-kubeclient: assets $(KUBECLIENTS_VENV)/.installed  ## controller.kube against kubernetes_asyncio and lightkube
	$(KUBECLIENTS_VENV)/bin/python -m bench.kubeclient

clean:
	rm -rf $(VENV) $(KUBECLIENTS_VENV) .run
