# Ladder's entry points. `make serve` sets up and starts the gateway; `make test` sets up and runs the tests.
.PHONY: setup route serve test test-deps lint default-router

setup:
	bash scripts/setup.sh

route: setup
	.venv/bin/ladder route "$${PROMPT:-Explain the difference between a mutex and a semaphore.}"

serve: setup
	.venv/bin/ladder serve

test-deps: setup
	bash scripts/test_deps.sh

test: test-deps
	.venv/bin/python -m pytest -q -ra

lint:
	.venv/bin/ruff check .
	.venv/bin/mypy

default-router: setup
	bash scripts/build_default_router.sh
