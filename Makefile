# Ladder's entry points. `make serve` sets up and starts the gateway; `make test` sets up and runs the tests.
.PHONY: setup route serve test test-deps lint default-router images push registry

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

# Gateway, export and CPU-Triton images (buildah; docs/images.md): ARCHES, IMAGES, TAG, BASE, PUSH=registry/prefix,
# PUSH_TLS_VERIFY=false for a plain-HTTP registry on loopback (`make registry`).
images:
	bash scripts/install_images.sh $${ARCHES:-amd64 arm64} >/dev/null
	ARCHES="$(ARCHES)" IMAGES="$(IMAGES)" TAG="$(TAG)" BASE="$(BASE)" PUSH="$(PUSH)" PUSH_TLS_VERIFY="$(PUSH_TLS_VERIFY)" ENCODER_FP32="$(ENCODER_FP32)" bash scripts/build_images.sh

# Push the images already built (no rebuild): PUSH=registry/prefix, IMAGES, TAG, PUSH_TLS_VERIFY=false.
push:
	PUSH="$(PUSH)" IMAGES="$(IMAGES)" TAG="$(TAG)" PUSH_TLS_VERIFY="$(PUSH_TLS_VERIFY)" bash scripts/push_images.sh

# An OCI registry on 127.0.0.1:5000 (Debian's docker-registry; storage in /var/tmp/ladder-registry).
registry:
	bash scripts/local_registry.sh start
