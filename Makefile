# Two commands: `make run` starts the product, `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

# The suite runs against real PostgreSQL and Redis on this machine.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/controlplane
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15
TEST_ENV := DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
	SECRET_KEY=test-secret-key-not-for-production-0123456789abcdefghijklmnop \
	SECRETS_ENCRYPTION_KEYS=lN3oN3YVmG0qQx2d4d3H0cW0m8yS6uQ1tK4fP7rZ9aE= \
	CONTROLPLANE_DATA_DIR=$(CURDIR)/var/test DEBUG=false \
	EGRESS_ALLOWED_NETWORKS=127.0.0.0/8,::1/128
PYTEST_ARGS ?= -n 2

.PHONY: run test test-reliability install web worker beat migrate seed lint format check-services browser clean

$(BIN)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11 is required (python3.11 or python3 on PATH)."; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' || \
		{ echo "Python 3.11 is required; $(PYTHON) is $$($(PYTHON) --version)."; exit 1; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

migrate: install
	$(BIN)/python manage.py migrate --noinput

seed: migrate
	$(BIN)/python manage.py seed_demo

# Entry commands shared with docker-compose.yml.
web: install
	$(BIN)/python manage.py serve --host $(HOST) --port $(PORT)

worker: install
	$(BIN)/celery -A controlplane worker --loglevel INFO --concurrency 2

beat: install
	$(BIN)/celery -A controlplane beat --loglevel INFO --schedule var/celerybeat-schedule

run: seed
	@if [ -n "$$DATABASE_URL" ] && [ -n "$$REDIS_URL" ]; then \
		echo "Production mode: web, worker and beat (Ctrl-C stops all three)."; \
		mkdir -p var; \
		trap 'kill 0' INT TERM EXIT; \
		$(MAKE) --no-print-directory worker & \
		$(MAKE) --no-print-directory beat & \
		$(MAKE) --no-print-directory web; \
	else \
		echo "Embedded mode: SQLite, in-process worker. Open http://$(HOST):$(PORT)/ and sign in with a login above."; \
		$(MAKE) --no-print-directory web; \
	fi

check-services: install
	$(TEST_ENV) $(BIN)/python scripts/check_services.py

browser:
	@bash scripts/ensure_chromium.sh

test: install browser check-services
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	env -u DATABASE_URL -u REDIS_URL $(BIN)/python manage.py makemigrations --check --dry-run
	$(TEST_ENV) $(BIN)/pytest $(PYTEST_ARGS) -m "not reliability"
	$(TEST_ENV) $(BIN)/pytest -p no:xdist -m reliability tests/reliability

# Fault injection (tests/reliability/): kills workers, restarts a private Redis, cuts
# PostgreSQL behind a proxy. Serial: the tests measure recovery times.
test-reliability: install check-services
	$(TEST_ENV) $(BIN)/pytest -p no:xdist -m reliability tests/reliability

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf var .pytest_cache .ruff_cache
