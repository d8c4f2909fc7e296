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

.PHONY: run test test-unit lint lock format clean image docs podman-setup base-image demo manifests bench cluster-up cluster-down cluster-recycle e2e helm k8s-base k8s-apply litestream litestream-image moto-image

# Installed from the lock files: every transitive dependency pinned, with hashes (make lock).
$(BIN)/activate: requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r requirements-dev.lock
	touch $@

.venv-checks/bin/activate: requirements-checks.lock
	$(PYTHON) -m venv .venv-checks
	.venv-checks/bin/pip install --quiet --require-hashes -r requirements-checks.lock
	touch $@

# Re-pin every transitive dependency after a change to a requirements*.txt file.
lock:
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet pip-tools==7.6.2
	for name in requirements requirements-dev requirements-checks; do \
	  .venv-lock/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	    --no-emit-find-links --no-emit-index-url -o $$name.lock $$name.txt || exit 1; done

# Local development: debug on (no secret key needed), data in ./data, http://127.0.0.1:8000
run: $(BIN)/activate
	DJANGO_DEBUG=1 GUNICORN_CMD_ARGS="--bind 127.0.0.1:8000" $(BIN)/python manage.py serve

# The whole suite; tests whose tool (podman, kubectl, chromium, root) is missing skip and say why.
test: $(BIN)/activate .venv-checks/bin/activate
	$(BIN)/pytest

test-unit: $(BIN)/activate
	$(BIN)/pytest counter/tests

# Render every kustomization and the Helm chart, validate them (API schemas, checkov, yamllint),
# semantic tests, helm lint, the chart's schema refusals.
manifests: $(BIN)/activate .venv-checks/bin/activate
	$(BIN)/pytest -m manifests tests/test_manifests.py tests/test_chart.py

# Helm v4 built from the Go module proxy, cached outside the clone (~/.cache/app-python/).
helm:
	bash scripts/go-tool.sh helm

# The kustomize base is the chart's render (k8s/chart is the one source): run after editing it.
k8s-base:
	bash scripts/helm.sh kustomize-base > k8s/base/app-python.yaml.tmp && mv k8s/base/app-python.yaml.tmp k8s/base/app-python.yaml

# The kustomize path's Secret: a random key, made once, never committed (git-ignored). Add the
# admin's VISITS_ADMIN_PASSWORD_HASH to it (README, Configuration), or leave it empty: no admin.
k8s/base/secret.env:
	printf 'DJANGO_SECRET_KEY=%s\nVISITS_ADMIN_PASSWORD_HASH=\n' "$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))')" > $@

# Deploy with kubectl alone (kustomize): OVERLAY=k8s/base, k8s/overlays/canary, ...
OVERLAY ?= k8s/overlays/local
k8s-apply: k8s/base/secret.env
	kubectl apply -k $(OVERLAY)

# Throughput, latency, lost visits, start-up and memory of the production server (needs wrk);
# with Litestream beside it too, once `make litestream` has built it (else skipped, saying so).
bench: $(BIN)/activate
	$(BIN)/python -m bench.run

# Litestream v0.5 built from the Go module proxy, cached outside the clone (~/.cache/app-python/).
litestream:
	bash scripts/go-tool.sh litestream

# Its image for the chart's backup sidecar (scripts/litestream.Dockerfile).
litestream-image:
	ENGINE=$(ENGINE) BUILD_FLAGS="$(BUILD_FLAGS)" bash scripts/litestream.sh image

# moto's S3 server, the backup e2e's in-cluster store (e2e/moto/; never for real backups).
moto-image:
	$(ENGINE) build $(BUILD_FLAGS) -t $(MOTO_IMAGE) e2e/moto

# A real Kubernetes built from source, three nodes on this machine (NODES=1 for a quick one;
# root; the first build took 9 minutes here).
cluster-up:
	bash e2e/cluster.sh up

cluster-down:
	bash e2e/cluster.sh down

# cluster-up, the image loaded, the StatefulSet asserted on the cluster (transcripts in
# docs/transcripts/), then cluster-down, also when a step fails.
e2e: $(BIN)/activate image helm litestream-image moto-image
	bash e2e/cluster.sh up && bash e2e/cluster.sh load $(IMAGE) \
	  && bash e2e/cluster.sh load $(LITESTREAM_IMAGE) && bash e2e/cluster.sh load $(MOTO_IMAGE) \
	  && KUBECONFIG=$(CURDIR)/.cluster/kubeconfig $(BIN)/pytest -m e2e tests/test_e2e_nodes.py tests/test_e2e.py \
	    tests/test_e2e_helm.py tests/test_e2e_backup.py tests/test_e2e_perimeter.py \
	    tests/test_e2e_upgrade.py tests/test_e2e_ops.py \
	  && $(MAKE) cluster-recycle; \
	status=$$?; bash e2e/cluster.sh down; exit $$status

# After a deployment: down, up again from a clean state, and a new pod's DNS works.
cluster-recycle:
	bash e2e/cluster.sh down && bash e2e/cluster.sh up && bash e2e/cluster.sh load $(IMAGE) \
	  && KUBECONFIG=$(CURDIR)/.cluster/kubeconfig bash e2e/cluster.sh dns-check $(IMAGE)

# ruff, and the migration rule: within a major version migrations only add (django-migration-linter).
lint: $(BIN)/activate
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest --quiet --no-header -p no:cacheprovider counter/tests/test_migrations.py

format: $(BIN)/activate
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

image:
	$(ENGINE) build $(BUILD_FLAGS) --build-arg VERSION=$(VERSION) --build-arg SOURCE=$(SOURCE) -t $(IMAGE) .

# The README's screenshots from the browser tests, and the container demo's transcript.
docs: demo
	WRITE_DOCS=1 $(BIN)/pytest -m browser tests/test_browser.py

# Three containers, each with its own volume; the transcript is the docs' copy of a real run.
demo: image
	ENGINE=$(ENGINE) IMAGE=$(IMAGE) bash scripts/container-demo.sh > docs/transcripts/container-demo.txt
	cat docs/transcripts/container-demo.txt

# For machines without a container registry (like CI's): podman + runc, and a stand-in
# python:3.13-slim made from Debian packages. Needs root.
podman-setup:
	bash scripts/podman-setup.sh

base-image: podman-setup
	bash scripts/standin-base-image.sh

clean:
	rm -rf $(VENV) .venv-checks .venv-lock staticfiles .pytest_cache .ruff_cache
