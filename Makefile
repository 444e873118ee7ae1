# The two commands: `make demo` and `make test`. Both set up .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The stamp is newer than pyproject.toml once the install succeeded; a second run starts at once.
STAMP  := $(VENV)/.installed

.PHONY: demo test stories docs setup clean-venv

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "[setup] installing raysynth and its stack into $(VENV) (first run: a few minutes)"
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,cpu]'
	@touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/python jobs/search.py

# pytest's exit 5 means "no tests collected": say so, and fail (make reports any
# failing recipe as exit 2).
test: $(STAMP)
	@rc=0; $(BIN)/python -m pytest -q || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; \
	exit $$rc

# the end-to-end stories of minutes each (cold autoscaling cluster, `ray job submit`, a
# lost node, a killed driver, S3, the MLflow server, ...): CI runs them after `make test`
stories: $(STAMP)
	$(BIN)/python -m pytest -q -m story

# the documentation site, built strictly (a broken link or a stale page fails) into build/site
docs: $(STAMP)
	$(BIN)/python -m raysynth.reference > docs/configuration.md
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --quiet
	@echo "docs: build/site/index.html"

clean-venv:
	rm -rf $(VENV)
