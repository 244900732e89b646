# Relais: `make run` serves the console; `make test` runs every suite. See README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 5000
DEMO_FAKE_PORT ?= 5071
export PORT

.PHONY: run demo worker test test-python test-frontend test-e2e bench migrate bootstrap venv dev-deps frontend clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed
dev-deps: $(VENV)/.dev-installed

frontend/node_modules/.installed: frontend/package.json frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund
	touch $@

frontend/dist/index.html: frontend/node_modules/.installed $(shell find frontend/src -type f 2>/dev/null) frontend/index.html frontend/vite.config.ts
	cd frontend && npm run build

frontend: frontend/dist/index.html

migrate: venv
	@mkdir -p instance
	$(PY) -m alembic upgrade head

bootstrap: migrate
	$(PY) -m flask --app wsgi bootstrap

# With REDIS_URL set: gunicorn (gevent: a websocket costs a greenlet) + an RQ worker; otherwise the embedded server (SQLite, no Redis).
run: venv frontend bootstrap
	@if [ -n "$$REDIS_URL" ]; then \
	  trap 'kill 0' EXIT INT TERM; \
	  $(PY) -m inbox.jobs.worker & \
	  $(VENV)/bin/gunicorn -w 1 -k gevent --worker-connections 1000 -b 127.0.0.1:$(PORT) wsgi:app; \
	else \
	  $(PY) -m inbox.serve; \
	fi

# The app plus a local fake Meta platform posting signed comments and DMs, and receiving the replies.
demo: venv frontend
	@mkdir -p instance
	trap 'kill 0' EXIT INT TERM; \
	export META_GRAPH_BASE_URL=http://127.0.0.1:$(DEMO_FAKE_PORT)/v21.0 DEMO_APP_SECRET=$${DEMO_APP_SECRET:-demo-app-secret}; \
	$(PY) -m alembic upgrade head && $(PY) -m flask --app wsgi bootstrap && \
	( $(PY) -m inbox.demo.fake_meta --port $(DEMO_FAKE_PORT) --webhook-url http://127.0.0.1:$(PORT)/webhooks/meta \
	    --app-secret $$DEMO_APP_SECRET --page-id 1000000001 --page-id 2000000002 --rate $${DEMO_RATE:-0.5} & ) ; \
	if [ -n "$$REDIS_URL" ]; then \
	  $(PY) -m inbox.jobs.worker & \
	  $(VENV)/bin/gunicorn -w 1 -k gevent --worker-connections 1000 -b 127.0.0.1:$(PORT) wsgi:app; \
	else \
	  $(PY) -m inbox.serve; \
	fi

worker: venv
	$(PY) -m inbox.jobs.worker

# Every suite. REQUIRE_SERVICES=1 (.ci/run) turns "PostgreSQL/Redis/Chromium missing" skips into failures.
test: dev-deps frontend test-frontend test-python

test-frontend: frontend/node_modules/.installed
	cd frontend && npm test

test-python: dev-deps
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get install -y -q chromium >/dev/null 2>&1 || echo "chromium not installed: browser tests will skip"; }
	$(PY) -m pytest tests/unit tests/integration tests/e2e -q --ignore=tests/integration/test_multiprocess.py
	RELAIS_TEST_DB=postgresql $(PY) -m pytest tests/integration -q

bench: dev-deps frontend/node_modules/.installed
	$(PY) -m bench.run_all

clean:
	rm -rf $(VENV) frontend/node_modules frontend/dist
