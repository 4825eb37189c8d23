# mailparity developer commands. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test lint typecheck pytest demo docs schema bench clean services-up services-down

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,docs,cli]'
	@touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples

typecheck: $(STAMP)
	$(BIN)/mypy --strict src
	$(BIN)/mypy --strict examples/fastapi_helpdesk

pytest: $(STAMP)
	scripts/with-services.sh $(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

demo: $(STAMP)
	$(BIN)/mailparity demo

docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir build/site

# Regenerates the shipped event JSON Schema after a model changed (tests/test_events.py fails
# until the file is current).
schema: $(STAMP)
	$(BIN)/python -c "from mailparity.events import write_event_schema; write_event_schema()"

# Installs what it compares against (the `bench` extra), runs with PostgreSQL started for the
# multi-process latency cases, and rewrites docs/benchmarks.md.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	scripts/with-services.sh $(BIN)/python benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build .mypy_cache .ruff_cache
