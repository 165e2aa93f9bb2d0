# Two entry points for people: `make demo` and `make test`. Both install what is missing first.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= /usr/bin/python3
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
COLLECTIONS := $(CURDIR)/.collections
INSTALLED := $(COLLECTIONS)/ansible_collections/kvmio/tuning
SHARED_TOOLS := $(CURDIR)/../shared/tools
PYTEST_ARGS ?=

export PATH := $(BIN):$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH := false
export ANSIBLE_PYTHON_INTERPRETER := $(BIN)/python
export ANSIBLE_NOCOLOR := 1

.PHONY: demo test deps venv collection services sanity lint pytest unit clean

demo: collection
	$(BIN)/ansible-playbook playbooks/demo.yml

test: collection services sanity lint pytest

deps:
	tools/install-deps test

venv: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt | deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

# Build the collection as users get it (galaxy.yml's build_ignore applies) and install it.
collection: venv
	rm -rf .build && mkdir -p .build
	$(BIN)/ansible-galaxy collection build -f --output-path .build . >/dev/null
	$(BIN)/ansible-galaxy collection install -f -p $(COLLECTIONS) .build/kvmio-tuning-*.tar.gz >/dev/null

services: deps
	tools/start-libvirt

sanity: collection
	if [ -x $(SHARED_TOOLS)/ansible-test-offline-pip ]; then $(SHARED_TOOLS)/ansible-test-offline-pip $(BIN)/python; fi
	# The installed copy lies inside this checkout's (ignored) tree: give it a repository of its own
	# so ansible-test lists its files.
	cd $(INSTALLED) && rm -rf .git .ansible && git init -q && echo .ansible/ > .git/info/exclude && git add -A && $(BIN)/ansible-test sanity --local --python $$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])') --color no

lint: venv
	$(BIN)/ansible-lint --profile production
	$(BIN)/antsibull-changelog lint

pytest: collection services
	$(BIN)/pytest $(PYTEST_ARGS) tests

unit: venv
	$(BIN)/pytest $(PYTEST_ARGS) tests/unit

clean:
	rm -rf .build $(COLLECTIONS) .pytest_cache
