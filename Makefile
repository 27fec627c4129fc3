# Two entry points for a fresh Linux machine with Python 3.11+ (and Docker if present):
#   make demo   - runs the demo fleet (examples/demo.yaml) on loopback
#   make test   - runs the whole test suite
# Each creates its own virtual environment in .venv and installs what it needs (idempotent).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "iocfleet needs Python 3.11 or newer (found %s)" % sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/iocfleet plan examples/demo.yaml --explain
	$(BIN)/iocfleet up examples/demo.yaml
	@echo
	@echo "== reading two PVs with exactly the printed client settings"
	eval "$$($(BIN)/iocfleet env examples/demo.yaml)" && $(BIN)/caproto-get DEMO:MTR:POS DEMO:DET:COUNTS
	@echo
	@echo "The demo fleet keeps running. Look at it:  $(BIN)/iocfleet status examples/demo.yaml"
	@echo "Stop it:                                   $(BIN)/iocfleet down examples/demo.yaml"

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
