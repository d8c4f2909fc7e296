# Every target is one obvious step; the README's commands are these targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE ?= app-python:$(VERSION)
# HELM_VERSION, LITESTREAM_VERSION, ...: the tools' versions, one place for the scripts and tests.
include scripts/versions.env
# The backup sidecar's image (the chart's backup.image) and the e2e's S3 store, both built here.
LITESTREAM_IMAGE := app-python-litestream:$(LITESTREAM_VERSION)
MOTO_IMAGE := app-python-moto:$(shell sed -n 's/^moto\[server\]==//p' e2e/moto/requirements.txt)
# The image's org.opencontainers.image.source label: this clone's remote, when it has one.
SOURCE ?= $(or $(shell git remote get-url origin 2>/dev/null),unknown)
# docker when its engine answers, else podman (this project's machines have podman only).
ENGINE ?= $(shell if docker info >/dev/null 2>&1; then echo docker; else echo podman; fi)
# podman builds: keep HEALTHCHECK (docker image format) and trust the host's CA bundle in RUN.
ifeq ($(ENGINE),podman)
BUILD_FLAGS ?= --format docker $(if $(wildcard /etc/ssl/certs/ca-certificates.crt),\
  -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
endif

.PHONY: help run password-hash test test-unit lint lock format clean image docs podman-setup base-image demo manifests chart-readme bench cluster-up cluster-down cluster-recycle e2e helm k8s-base k8s-apply litestream litestream-image moto-image vulncheck

# The first target, so plain `make` runs it: each target's `## ` comment is its line here.
help:  ## this list (the default goal)
	@echo 'make TARGET [VARIABLE=value ...]:'
	@awk -F ':.*## ' '/^[^#[:space:]=]+:.*## / { sub(/\$$\(BIN\)/, "$(BIN)", $$1); printf "  %-26s %s\n", $$1, $$2 }' $(firstword $(MAKEFILE_LIST))

# Installed from the lock files: every transitive dependency pinned, with hashes (make lock).
$(BIN)/activate: requirements-dev.lock  ## the venv: the app's and the tests' dependencies
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.lock
	touch $@

.venv-checks/bin/activate: requirements-checks.lock  ## the checkers' venv (checkov, hadolint, yamllint, ...)
	$(PYTHON) -m venv .venv-checks
	.venv-checks/bin/pip install --quiet --require-hashes -r requirements-checks.lock
	touch $@

lock:  ## re-pin every dependency after a change to a requirements*.txt
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet pip-tools==7.6.2
	for name in requirements requirements-dev requirements-checks; do \
	  .venv-lock/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	    --no-emit-find-links --no-emit-index-url -o $$name.lock $$name.txt || exit 1; done

# Local development: debug on (no secret key needed), data in ./data. GUNICORN_CMD_ARGS from
# the environment or the command line is passed on; with a --bind of its own, PORT is not used.
PORT ?= 8000
LOCAL_BIND = $(if $(filter --bind% -b%,$(GUNICORN_CMD_ARGS)),,--bind 127.0.0.1:$(PORT))
run: $(BIN)/activate  ## the site on http://127.0.0.1:8000 (PORT=N), debug on, data in ./data
	DJANGO_DEBUG=1 GUNICORN_CMD_ARGS="$(LOCAL_BIND) $$GUNICORN_CMD_ARGS" $(BIN)/python manage.py serve

# The prompts go to the terminal, never to stdout: HASH=$$(make -s password-hash) works.
password-hash: $(BIN)/activate  ## asks for a password, prints its VISITS_ADMIN_PASSWORD_HASH
	@DJANGO_DEBUG=1 $(BIN)/python manage.py password_hash

test: $(BIN)/activate .venv-checks/bin/activate  ## the whole suite (a test whose tool is missing skips)
	$(BIN)/pytest

test-unit: $(BIN)/activate  ## the unit tests (counter/tests/): quick, no server
	$(BIN)/pytest counter/tests

# Render every kustomization and the Helm chart, validate them (API schemas, checkov, yamllint),
# semantic tests, helm lint, the chart's schema refusals.
manifests: $(BIN)/activate .venv-checks/bin/activate  ## the chart and kustomizations, rendered and checked offline
	$(BIN)/pytest -m manifests tests/test_manifests.py tests/test_chart.py

# Bitnami's readme-generator-for-helm from npm, installed once outside the clone; it refuses a
# value without a description. Run after editing values.yaml (tests/test_chart_readme.py).
chart-readme:  ## k8s/chart/README.md from the comments of values.yaml
	bash scripts/chart-readme.sh

# Cached outside the clone (~/.cache/app-python/).
helm:  ## Helm v4, built from the Go module proxy once
	bash scripts/go-tool.sh helm

# The kustomize base is the chart's render (k8s/chart is the one source).
k8s-base:  ## k8s/base/app-python.yaml from the chart: after editing it
	bash scripts/helm.sh kustomize-base > k8s/base/app-python.yaml.tmp && mv k8s/base/app-python.yaml.tmp k8s/base/app-python.yaml

# The kustomize path's Secret: a random key, made once, never committed (git-ignored). Add the
# admin's VISITS_ADMIN_PASSWORD_HASH to it (README, Configuration), or leave it empty: no admin.
k8s/base/secret.env:  ## the kustomize path's Secret, a random key (git-ignored)
	printf 'DJANGO_SECRET_KEY=%s\nVISITS_ADMIN_PASSWORD_HASH=\n' "$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))')" > $@

OVERLAY ?= k8s/overlays/local
k8s-apply: k8s/base/secret.env  ## deploy with kubectl alone: OVERLAY=k8s/overlays/local, ...
	kubectl apply -k $(OVERLAY)

# Throughput, latency, lost visits, start-up and memory of the production server (needs wrk);
# with Litestream beside it too, once `make litestream` has built it (else skipped, saying so).
bench: $(BIN)/activate  ## the benchmark (needs wrk): writes docs/performance.md
	$(BIN)/python -m bench.run

# Cached outside the clone (~/.cache/app-python/).
litestream:  ## Litestream v0.5, built from the Go module proxy once
	bash scripts/go-tool.sh litestream

litestream-image:  ## the image of the chart's backup sidecar
	ENGINE=$(ENGINE) BUILD_FLAGS="$(BUILD_FLAGS)" bash scripts/litestream.sh image

moto-image:  ## moto's S3 server, the backup e2e's store (never for backups)
	$(ENGINE) build $(BUILD_FLAGS) -t $(MOTO_IMAGE) e2e/moto

# Built first if missing; the Go vulnerability database is made from golang.org/x/vulndb on the
# Go module proxy (scripts/vulncheck.py).
vulncheck:  ## govulncheck on the Helm and Litestream builds
	$(PYTHON) scripts/vulncheck.py

# Root; the first build took 9 minutes here.
cluster-up:  ## a Kubernetes built from source, 3 nodes here (NODES=1: one)
	bash e2e/cluster.sh up

cluster-down:  ## that cluster stopped and removed
	bash e2e/cluster.sh down

# cluster-up, the image loaded, the StatefulSet asserted on the cluster (transcripts in
# docs/transcripts/), then cluster-down, also when a step fails.
e2e: $(BIN)/activate image helm litestream-image moto-image  ## the end-to-end tests on a real cluster, up then down
	bash e2e/cluster.sh up && bash e2e/cluster.sh load $(IMAGE) \
	  && bash e2e/cluster.sh load $(LITESTREAM_IMAGE) && bash e2e/cluster.sh load $(MOTO_IMAGE) \
	  && KUBECONFIG=$(CURDIR)/.cluster/kubeconfig $(BIN)/pytest -m e2e tests/test_e2e_nodes.py tests/test_e2e.py \
	    tests/test_e2e_helm.py tests/test_e2e_backup.py tests/test_e2e_perimeter.py \
	    tests/test_e2e_upgrade.py tests/test_e2e_ops.py \
	  && $(MAKE) cluster-recycle; \
	status=$$?; bash e2e/cluster.sh down; exit $$status

cluster-recycle:  ## the cluster down, up clean again, a new pod's DNS checked
	bash e2e/cluster.sh down && bash e2e/cluster.sh up && bash e2e/cluster.sh load $(IMAGE) \
	  && KUBECONFIG=$(CURDIR)/.cluster/kubeconfig bash e2e/cluster.sh dns-check $(IMAGE)

# ruff; which module may import which (import-linter, pyproject.toml); the migration rule: within
# a major version migrations only add (django-migration-linter); and every pin the newest patch
# release of its series on the package index and the Go module proxy (scripts/pins_current.py;
# skipped with one line when they cannot be reached).
lint: $(BIN)/activate  ## ruff, the import contracts, the project's own checks, pins current
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache --no-logo
	$(BIN)/pytest --quiet --no-header -p no:cacheprovider --tb=line --show-capture=no \
	  counter/tests/test_migrations.py::test_every_migration_only_adds
	$(BIN)/python scripts/pins_current.py

format: $(BIN)/activate  ## ruff's fixes and formatting, applied
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

image:  ## the app's image, tagged with pyproject.toml's version
	$(ENGINE) build $(BUILD_FLAGS) --build-arg VERSION=$(VERSION) --build-arg SOURCE=$(SOURCE) -t $(IMAGE) .

docs: demo  ## the README's screenshots and the container demo's transcript
	WRITE_DOCS=1 $(BIN)/pytest -m browser tests/test_browser.py

# The transcript is the docs' copy of a real run.
demo: image  ## three containers, a volume each: the demo's transcript
	ENGINE=$(ENGINE) IMAGE=$(IMAGE) bash scripts/container-demo.sh > docs/transcripts/container-demo.txt
	cat docs/transcripts/container-demo.txt

# For machines without a container registry (like CI's). Needs root.
podman-setup:  ## podman and runc from Debian, set up for this machine
	bash scripts/podman-setup.sh

base-image: podman-setup  ## a stand-in python:3.13-slim made from Debian packages
	bash scripts/standin-base-image.sh

clean:  ## the venvs and collected files removed
	rm -rf $(VENV) .venv-checks .venv-lock staticfiles .pytest_cache .ruff_cache
