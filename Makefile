# The two commands a new user needs: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint schema-doc bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	./examples/demo.sh

# Everything, slow tests included: what CI runs.
test: $(STAMP)
	$(BIN)/pytest

# The tests not marked slow (crashes, busy locks, real processes, IMAP, fuzzing, benchmarks), on
# two cores: while you work.
test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow" -n 2

lint: $(STAMP)
	$(BIN)/ruff check pipectl tests bench tools
	$(BIN)/ruff format --check pipectl tests bench tools
	$(BIN)/mypy pipectl tools tests/unit tests/test_docs.py

# docs/SCHEMA.md from a freshly migrated database: run it after adding a migration.
schema-doc: $(STAMP)
	$(BIN)/python tools/schema_doc.py

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) demo-run .pytest_cache
