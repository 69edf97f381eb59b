# The README's two commands: `make run` and `make test`.
VENV := .venv/bin

.PHONY: run test setup run-setup test-setup bench clean

setup:
	deploy/dev/tools.sh python

run-setup:
	deploy/dev/tools.sh run

run: run-setup
	$(VENV)/custody dev up $(DEV_ARGS)

test-setup:
	deploy/dev/tools.sh test

test: test-setup
	CUSTODY_TEST_PG_URL=$${CUSTODY_TEST_PG_URL:-$$(deploy/dev/postgres.sh)} \
	  $(VENV)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf build .pytest_cache .hypothesis mpc/_native/libtss*.so mpc/_native/libtss*.h
