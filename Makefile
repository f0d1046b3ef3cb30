# Ladder's entry points. `make serve` sets up and starts the gateway; `make test` sets up and runs the tests.
.PHONY: setup route serve test test-deps lint default-router images

setup:
	bash scripts/setup.sh

route: setup
	.venv/bin/ladder route "$${PROMPT:-Explain the difference between a mutex and a semaphore.}"

# Clients authenticate with a bearer key: LADDER_API_KEYS if set, else a fresh one printed here.
serve: setup
	@key="$${LADDER_API_KEYS:-$$(.venv/bin/python -c 'import secrets; print("ladder-" + secrets.token_urlsafe(24))')}"; \
	echo "==> client API key: $$key  (playground: http://127.0.0.1:8000/#key=$$key)"; \
	LADDER_API_KEYS="$$key" .venv/bin/ladder serve

test-deps: setup
	bash scripts/test_deps.sh

test: test-deps
	.venv/bin/python -m pytest -q -ra

lint:
	.venv/bin/ruff check .
	.venv/bin/mypy

default-router: setup
	bash scripts/build_default_router.sh

# Gateway, export and CPU-Triton images (buildah; docs/images.md): ARCHES, IMAGES, TAG, BASE, PUSH=registry/prefix.
images:
	bash scripts/install_images.sh $${ARCHES:-amd64 arm64} >/dev/null
	ARCHES="$(ARCHES)" IMAGES="$(IMAGES)" TAG="$(TAG)" BASE="$(BASE)" PUSH="$(PUSH)" ENCODER_FP32="$(ENCODER_FP32)" bash scripts/build_images.sh
