# The two commands: `make demo` and `make test`. Both create .venv from the pinned files first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast e2e e2e-celery doctor bench soak lint airflow lock clean

$(STAMP): requirements.txt requirements-dev.txt requirements-lock.txt requirements-bench.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check \
		-r requirements-dev.txt -c requirements-lock.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -r requirements-bench.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)  ## run the DAG once against the local stand-ins
	$(BIN)/python -m sandbox.demo

test: $(STAMP)  ## the whole test suite; scripts/provision first installs what it needs from Debian
	scripts/provision
	$(BIN)/python -m pytest

test-fast: $(STAMP)  ## the suite without Airflow runs, the scheduler, Celery, the browser and PostgreSQL: the edit-test loop
	$(BIN)/python -m pytest -m "not (airflow or scheduler or celery or browser or postgres)"

e2e: $(STAMP)  ## a 3-day backfill through airflow standalone's real scheduler (also in `make test`)
	$(BIN)/python -m pytest tests/e2e

e2e-celery: $(STAMP)  ## the docker-compose topology without Docker: PostgreSQL, Redis, CeleryExecutor, two workers, a 2-day backfill (also in `make test`)
	$(BIN)/python -m pytest tests/celery

N ?= 100000
bench: $(STAMP)  ## the benchmark beside segment-analytics-python (make bench N=1000000 for the large run; DATA=DIR keeps and reuses a large account)
	$(BIN)/python -m bench.run --users $(N) $(if $(DATA),--data $(DATA))

doctor: $(STAMP)  ## check moesif_default / segment_default against the real accounts (ARGS="--send-test --format json")
	$(BIN)/python -m moesif_segment_sync doctor $(ARGS)

soak: $(STAMP)  ## 20 windows with random faults at both stand-ins; writes its figures to docs/RELIABILITY.md
	$(BIN)/python -m pytest -m soak tests/reliability

lint: $(STAMP)
	$(BIN)/ruff check dags include plugins sandbox tests

airflow: $(STAMP)  ## airflow standalone with the stand-ins and connections preset
	$(BIN)/python -m sandbox.airflow_local

lock:  ## re-pin requirements-lock.txt from a fresh venv
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet -r requirements-dev.txt
	(echo "# Every package of the local .venv, pinned (Airflow's own constraints file is not reachable here)."; \
	 echo "# Regenerate with: make lock"; .venv-lock/bin/pip freeze --all | grep -v "^pip=") > requirements-lock.txt
	rm -rf .venv-lock

clean:
	rm -rf .demo .e2e .pytest_cache
