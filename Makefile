# Syndarix: `make run` (zero setup, SQLite, demo data) and `make test` (PostgreSQL + Redis).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TEST_DATABASE_URL ?= $(or $(DATABASE_URL),postgres://postgres@127.0.0.1:5432/syndarix)
TEST_REDIS_URL ?= $(or $(REDIS_URL),redis://127.0.0.1:6379/1)
# The broker gets a Redis database of its own: the tests clear the cache's database between tests.
TEST_BROKER_URL ?= redis://127.0.0.1:6379/2

.PHONY: install run worker test lint bench clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

install: $(BIN)/.installed

# A Celery worker for development: threads (quick to start and stop), with the periodic jobs (--beat).
DEV_WORKER = $(BIN)/celery -A syndarix worker --beat --schedule=.celery/beat-schedule --pool=threads --concurrency=4

# The web server and a worker beside it, sharing SQLite and, without REDIS_URL, a folder broker in .celery/.
# Ctrl-C stops both: the worker gets 10 s to finish what it runs, then it is stopped (a run it held continues
# from its checkpoint at the next start).
run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py createcachetable
	$(BIN)/python manage.py seed_demo
	mkdir -p .celery
	setsid $(DEV_WORKER) --loglevel=INFO --logfile=.celery/worker.log & worker=$$!; \
	stop() { kill -TERM $$worker 2>/dev/null; for _ in $$(seq 50); do kill -0 $$worker 2>/dev/null || return 0; \
		sleep 0.2; done; kill -KILL -- -$$worker 2>/dev/null; }; \
	trap stop EXIT; trap 'exit 130' INT TERM; \
	echo "Worker started (log: .celery/worker.log)"; \
	$(BIN)/python manage.py runserver 127.0.0.1:8000

worker: install
	mkdir -p .celery
	$(DEV_WORKER) --loglevel=INFO

test: install
	DJANGO_ENV_FILE= DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) \
		CELERY_BROKER_URL=$(TEST_BROKER_URL) DJANGO_DEBUG=true $(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

bench: install
	for script in benchmarks/bench_*.py; do echo "== $$script"; DATABASE_URL=$(TEST_DATABASE_URL) $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) db.sqlite3 db.sqlite3-wal db.sqlite3-shm .celery .pytest_cache .ruff_cache
