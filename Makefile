# Every target is one obvious step; the README's commands are these targets.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test test-unit lint format clean

$(BIN)/activate: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

# Local development: debug on (no secret key needed), data in ./data, http://127.0.0.1:8000
run: $(BIN)/activate
	DJANGO_DEBUG=1 GUNICORN_CMD_ARGS="--bind 127.0.0.1:8000" $(BIN)/python manage.py serve

# The whole suite; tests whose tool (podman, kubectl, chromium, root) is missing skip and say why.
test: $(BIN)/activate
	$(BIN)/pytest

test-unit: $(BIN)/activate
	$(BIN)/pytest counter/tests

lint: $(BIN)/activate
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(BIN)/activate
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache
