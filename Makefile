# Syndarix: `make run` (zero setup, SQLite, demo data) and `make test` (PostgreSQL + Redis).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TEST_DATABASE_URL ?= $(or $(DATABASE_URL),postgres://postgres@127.0.0.1:5432/syndarix)
TEST_REDIS_URL ?= $(or $(REDIS_URL),redis://127.0.0.1:6379/1)
# The broker gets a Redis database of its own: the tests clear the cache's database between tests.
TEST_BROKER_URL ?= redis://127.0.0.1:6379/2

.PHONY: install run test lint bench clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py createcachetable
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py runserver 127.0.0.1:8000

test: install
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) CELERY_BROKER_URL=$(TEST_BROKER_URL) \
		DJANGO_DEBUG=true $(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

bench: install
	for script in benchmarks/bench_*.py; do echo "== $$script"; DATABASE_URL=$(TEST_DATABASE_URL) $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) db.sqlite3 .pytest_cache .ruff_cache
