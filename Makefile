# Two commands for a fresh machine (Python 3.11+, Java 17+, Maven):
#   make demo   install, start the local services, run the whole flow headless
#   make test   install, lint, build the docs (strict), run every test tier
#   make docs   serve the documentation site locally
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo test test-unit test-integration test-notebooks test-browser chromium lint format docs docs-build lab up down status bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

demo: install
	$(PY) -m pipeline_lib demo

test: install lint docs-build chromium
	$(PY) -m pytest

test-unit: install
	$(PY) -m pytest -m unit

test-integration: install
	$(PY) -m pytest -m integration

test-notebooks: install
	$(PY) -m pytest -m notebooks

test-browser: install chromium
	$(PY) -m pytest -m browser

# The browser tier drives Debian's Chromium (Playwright cannot download its own here).
chromium:
	@test -x /usr/bin/chromium || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else \
	    echo "No Chromium: the browser tier is skipped. 'sudo apt-get install chromium' enables it."; \
	  fi; }

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# The documentation site (docs/, mkdocs.yml). Strict: a broken link or anchor, or a page
# left out of nav, fails the build. NO_MKDOCS_2_WARNING quiets Material's banner.
SITE ?= site
MKDOCS := NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs

docs: install
	$(MKDOCS) serve

docs-build: install
	$(MKDOCS) build --strict --site-dir $(SITE)

lab: install
	$(PY) -m pip install --quiet -e '.[dev,lab]'
	$(PY) -m pipeline_lib up
	cd notebooks && ../$(VENV)/bin/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root,)

up down status: install
	$(PY) -m pipeline_lib $@

bench: install
	$(PY) -m bench

clean:
	-$(PY) -m pipeline_lib down
	rm -rf $(VENV) .pipeline .pipeline-test .pipeline-bench output $(SITE)
