# Two entry points for a fresh machine: `make demo` (web demo on the bundled model) and `make test`.
# Each creates the virtual environment and installs what it needs on first use (a few minutes and ~7 GB of disk
# with the default CUDA build of torch; pip shows its progress).
VENV ?= .venv
PY := $(VENV)/bin/python
# A CPU-only torch build, where one of the pinned version exists: make install TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: demo test test-fast lint install browser bench clean-venv

demo: $(VENV)/.installed
	$(PY) app.py

test: $(VENV)/.installed browser lint
	$(PY) -m pytest -q --timeout=900

# The quick subset: no multi-second tests, no browser.
test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow and not browser" --timeout=900

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	@echo "== [1/4] creating the virtual environment $(VENV)"
	python3 -m venv $(VENV)
	@echo "== [2/4] upgrading pip"
	$(PY) -m pip install --progress-bar on --upgrade pip
	@if [ -n "$(TORCH_INDEX)" ]; then \
	  echo "== [2b/4] torch and torchvision from $(TORCH_INDEX)"; \
	  $(PY) -m pip install --progress-bar on --index-url $(TORCH_INDEX) \
	    $$(grep -E '^(torch|torchvision)==' requirements.txt); \
	fi
	@echo "== [3/4] installing requirements.txt (the first time: several minutes, torch alone is ~1 GB to fetch)"
	$(PY) -m pip install --progress-bar on -r requirements.txt
	@echo "== [4/4] installing psp-gan itself (editable, provides .venv/bin/psp-restore)"
	$(PY) -m pip install --progress-bar on --no-deps -e .
	touch $@
	@echo "== done: $$(du -sh $(VENV) | cut -f1) in $(VENV)"

# The browser tests drive Debian's Chromium (Playwright must not download a browser of its own). Installing it
# needs root: sudo is used when this is not run as root.
browser:
	@if command -v chromium >/dev/null 2>&1; then \
	  echo "browser tests: using $$(command -v chromium)"; \
	else \
	  SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  echo "browser tests: installing Debian's chromium package with apt-get $${SUDO:+(through sudo)}"; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	fi

bench: $(VENV)/.installed
	$(PY) -m psp_hub.benchmark

clean-venv:
	rm -rf $(VENV)
