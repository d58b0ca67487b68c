# The two commands of the README's Quick start: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run serve test test-js lint install bench

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

# Set up, migrate, create the first user (password printed once), collect the static
# files (served by the app itself when DEBUG is off), serve with daphne.
run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py ensure_admin
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(MAKE) --no-print-directory serve

# daphne behind `manage.py serve`, which drains streams on SIGTERM (the production command).
serve:
	$(BIN)/python manage.py serve --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python manage.py makemigrations --check --dry-run

# The JavaScript clients' tests (Node's test runner), the AI SDK's among them against
# a daphne of the project (hence the venv); skipped without Node, except under CI=true
# (where the AI SDK tests also fail without the venv instead of skipping).
test-js: install
	@if command -v npm >/dev/null; then npm ci --no-audit --no-fund --silent && npm test; \
	elif [ "$$CI" = true ]; then echo "CI needs Node and npm for the JS tests" >&2; exit 1; \
	else echo "Node not found: skipping the JavaScript tests"; fi

# The whole suite; uses PostgreSQL and Redis when DATABASE_URL / REDIS_URL are set,
# and Chromium (CHROMIUM_PATH, default /usr/bin/chromium) for the browser tests.
test: lint test-js
	$(BIN)/pytest

# The benchmark: our relay and the FastAPI peer side by side (README "Performance"),
# each in fresh processes pinned to a core; ARGS="--quick" for one run per point.
BENCH_VENV := .venv-bench
$(BENCH_VENV)/.installed: bench/requirements.txt
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	touch $@

bench: install $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python bench/run.py $(ARGS)
