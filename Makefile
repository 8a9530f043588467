# The two commands the README gives. Each installs whatever is missing first.
.PHONY: demo test setup

setup:
	@bash scripts/bootstrap.sh

demo: setup
	@.venv/bin/evolve demo

test: setup
	@.venv/bin/python -m pytest -q
