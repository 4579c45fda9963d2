# Syndarix: `make run` (zero setup, SQLite, demo data) and `make test` (PostgreSQL + Redis).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TEST_DATABASE_URL ?= $(or $(DATABASE_URL),postgres://postgres@127.0.0.1:5432/syndarix)
TEST_REDIS_URL ?= $(or $(REDIS_URL),redis://127.0.0.1:6379/1)
# The broker gets a Redis database of its own: the tests clear the cache's database between tests.
TEST_BROKER_URL ?= redis://127.0.0.1:6379/2

.PHONY: install run worker test lint docs docs-serve bench fuzz clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

install: $(BIN)/.installed

# Development workers: a Celery worker on threads (quick to start and to stop) and the periodic jobs (beat).
DEV_WORKER = $(BIN)/celery -A syndarix worker --pool=threads --concurrency=4 --loglevel=INFO
DEV_BEAT = $(BIN)/celery -A syndarix beat --schedule=.celery/beat-schedule --loglevel=INFO

# The web server, and a worker and beat beside it in a process group of their own, sharing SQLite and, without
# REDIS_URL, a folder broker in .celery/. Ctrl-C stops them all: the worker gets 10 s to finish what it runs,
# then it is stopped (a run it held continues from its checkpoint at the next start).
run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py createcachetable
	$(BIN)/python manage.py seed_demo
	mkdir -p .celery
	setsid sh -c '$(DEV_WORKER) --logfile=.celery/worker.log & $(DEV_BEAT) --logfile=.celery/beat.log & wait' \
		>/dev/null 2>&1 & workers=$$!; \
	stop() { kill -TERM -$$workers 2>/dev/null; for _ in $$(seq 50); do \
		kill -0 -$$workers 2>/dev/null || return 0; sleep 0.2; done; kill -KILL -$$workers 2>/dev/null; }; \
	trap stop EXIT; trap 'exit 130' INT TERM; \
	echo "Worker and beat started (logs: .celery/worker.log, .celery/beat.log)"; \
	$(BIN)/python manage.py runserver 127.0.0.1:8000

worker: install
	mkdir -p .celery
	$(DEV_BEAT) & beat=$$!; trap 'kill $$beat 2>/dev/null' EXIT; $(DEV_WORKER)

test: install
	DJANGO_ENV_FILE= DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
		CELERY_BROKER_URL=$(TEST_BROKER_URL) DJANGO_DEBUG=true $(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

# The manual (MkDocs, Material theme): built with --strict into site/ (git-ignored); docs-serve reloads on edits.
# The API reference page is generated from `manage.py spectacular` at build time (docs/hooks/openapi_schema.py).
DOCS_ENV = NO_MKDOCS_2_WARNING=1 DJANGO_ENV_FILE=
docs: install
	$(DOCS_ENV) $(BIN)/mkdocs build --strict --site-dir site

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
