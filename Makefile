# Passage: `make run` serves the demo on 127.0.0.1:$(PORT); `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
INSTALLED := $(VENV)/.installed-requirements
POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/passage

PRISM_VERSION := 5.16.0
PRISM := .tools/node_modules/.bin/prism

.PHONY: run check-port test lint services prism browser fuzz bench loadtest postgis \
	freeze-migrations

$(INSTALLED): requirements.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@cp requirements.txt $@

# Checked before anything runs: runserver would refuse a bad or busy port only after migrate
# and load_demo had replaced the admin's password and the demo key.
check-port:
	@case "$(PORT)" in \
		""|*[!0-9]*|0*|??????*) bad=1 ;; \
		*) [ "$(PORT)" -le 65535 ] || bad=1 ;; \
	esac; \
	if [ -n "$${bad:-}" ]; then echo "PORT='$(PORT)': expected a port number from 1 to 65535." >&2; exit 1; fi
	@$(PYTHON) -c 'import socket, sys; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1])))' $(PORT) 2>/dev/null \
		|| { echo "127.0.0.1:$(PORT) is already in use (another make run?): nothing was changed; set PORT to a free port." >&2; exit 1; }

run: check-port $(INSTALLED)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py load_demo --base-url http://127.0.0.1:$(PORT)
	BEAT_IN_PROCESS=true $(BIN)/python manage.py runserver 127.0.0.1:$(PORT)

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

services:
	@tests/services.sh

# Lists new migrations' SHA-256 in tests/migrations.sha256, which the suite holds every
# migration to: one on main is never edited (tests/test_migrations_frozen.py).
freeze-migrations:
	$(PYTHON) -m tests.freeze_migrations

# The admin's browser test drives Debian's chromium; nothing is downloaded at test time.
browser:
	@if [ ! -x /usr/bin/chromedriver ] || [ ! -x /usr/bin/chromium ]; then \
		if command -v apt-get >/dev/null 2>&1; then \
			echo "Installing Debian's chromium and chromium-driver for the admin's browser test."; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null \
				|| echo "Could not install chromium: the browser test will skip."; \
		else \
			echo "apt-get is missing: the browser test will skip."; \
		fi; \
	fi

# Prism mocks Twilio's API from its OpenAPI description, to check our requests' shape.
prism: $(PRISM)
$(PRISM):
	@if command -v npm >/dev/null 2>&1; then \
		npm install --silent --no-audit --no-fund --prefix .tools @stoplight/prism-cli@$(PRISM_VERSION); \
	else \
		echo "npm is not installed: the Prism tests of the Twilio backend will skip."; \
	fi

test: $(INSTALLED) lint services prism browser
	$(BIN)/python -m pytest
	@if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then \
		echo "--- the suite again on PostgreSQL"; \
		DATABASE_URL=$(POSTGRES_URL) $(BIN)/python -m pytest; \
	elif [ "$${CI:-}" = "true" ]; then \
		echo "PostgreSQL is not reachable at 127.0.0.1:5432, and CI needs it."; exit 1; \
	else \
		echo "PostgreSQL is not reachable at 127.0.0.1:5432: skipping the PostgreSQL run."; \
	fi

# schemathesis over every operation, longer than `make test` runs it (FUZZ_EXAMPLES each).
fuzz: $(INSTALLED) services
	DATABASE_URL=$(POSTGRES_URL) FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-500} \
		$(BIN)/python -m pytest tests/integration/test_schema_fuzz.py

# Hot paths beside the obvious designs, measured in one run on this machine (bench/).
bench: $(INSTALLED) services postgis
	$(BIN)/python bench/matching.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/worker.py

# The whole system on loopback for about a minute and a half: ping-to-SMS latency at 1,000 pings/s,
# then sustained throughput with one worker (bench/loadtest.py says what it runs).
loadtest: $(INSTALLED) services
	$(BIN)/python bench/loadtest.py

# PostGIS, from Debian's packages, for the matching bench's ST_DWithin baseline only.
postgis:
	@if ! ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1; then \
		major=$$(ls /etc/postgresql 2>/dev/null | sort -n | tail -1); \
		if [ -n "$$major" ] && command -v apt-get >/dev/null 2>&1; then \
			echo "Installing PostGIS for PostgreSQL $$major (the matching bench's baseline)."; \
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql-$$major-postgis-3 >/dev/null \
				|| echo "Could not install PostGIS: the bench will skip its baseline."; \
		else \
			echo "PostGIS is not installed: the bench will skip its baseline."; \
		fi; \
	fi
