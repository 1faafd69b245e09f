.PHONY: install lint mypy test mutation

install:
	python3 -m venv .venv && .venv/bin/pip install -e '.[test]'

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

mypy:
	.venv/bin/mypy

test:
	.venv/bin/python -m pytest

# Mutation testing of the money and counting code (~20 min on 2 cores); writes mutation/REPORT.md. Not in CI.
mutation:
	.venv/bin/python mutation/run.py
