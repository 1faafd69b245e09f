.PHONY: install lint mypy test

install:
	python3 -m venv .venv && .venv/bin/pip install -e '.[test]'

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

mypy:
	.venv/bin/mypy

test:
	.venv/bin/python -m pytest
