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

# The demo gets a small environment of its own (the core and the demo extra, about 60 MB), not
# the development one: the first run takes about half a minute (creating the environment and
# installing), later runs about a second.
DEMO_VENV ?= .venv-demo
DEMO_STAMP := $(DEMO_VENV)/.installed

$(DEMO_STAMP): pyproject.toml
	@test -x $(DEMO_VENV)/bin/python || $(PYTHON) -m venv $(DEMO_VENV)
	@echo "make demo: installing mailparity and what the demo needs into $(DEMO_VENV) (once)"
	$(DEMO_VENV)/bin/python -m pip install --quiet -e '.[demo]'
	@touch $(DEMO_STAMP)

demo: $(DEMO_STAMP)
	$(DEMO_VENV)/bin/mailparity demo

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
	rm -rf $(VENV) $(DEMO_VENV) build .mypy_cache .ruff_cache
