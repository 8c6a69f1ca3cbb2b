# Two entry points for a fresh machine: `make demo` (web demo on the bundled model) and `make test`.
# Each creates the virtual environment and installs what it needs on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: demo test install browser bench clean-venv

demo: $(VENV)/.installed
	$(PY) app.py

test: $(VENV)/.installed browser
	$(PY) -m pytest -q --timeout=900

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# The browser tests drive Debian's Chromium (Playwright must not download a browser of its own).
browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

bench: $(VENV)/.installed
	$(PY) -m psp_hub.benchmark

clean-venv:
	rm -rf $(VENV)
