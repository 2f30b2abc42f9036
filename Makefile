# The two commands of the README: `make run` and `make test`.
# Both set up what they need first (scripts/setup.sh is idempotent).
SHELL := /bin/bash
export PATH := $(CURDIR)/.venv/bin:$(PATH)
MLX_GATEWAY_CONFIG ?= configs/demo.toml
MLX_GATEWAY_PORT ?= 8000
export MLX_GATEWAY_CONFIG MLX_GATEWAY_PORT

.PHONY: setup run test check bench procfile

setup:
	@scripts/setup.sh

# Gateway + one supervised worker per configured model, under honcho.
# The Procfile is generated from the selected config; for the default config
# it is identical to the committed Procfile (tests/test_procfile.py checks).
run: setup
	@mkdir -p run
	@python -m gateway.procfile --config $(MLX_GATEWAY_CONFIG) > run/Procfile
	honcho --procfile run/Procfile --app-root . start

test: check
	python -m pytest $(PYTEST_ARGS)

check: setup
	ruff check .
	ruff format --check .
	mypy

bench: setup
	python bench/llm_streams.py

procfile: setup
	python -m gateway.procfile --config configs/demo.toml > Procfile
