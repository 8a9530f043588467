# The two commands the README gives. Each installs whatever is missing first.
.PHONY: demo test setup

setup:
	@bash scripts/bootstrap.sh

# The main job on the embedded default model: one tool-using answer, then one full
# self-improvement cycle on GSM8K (acquire, refine, update, evaluate, promote or reject).
demo: setup
	-@.venv/bin/evolve demo  # a wrong answer is reported (exit 1) but the cycle still runs
	@.venv/bin/evolve improve --suite gsm8k --cycles 1 --train 4 --dev 10

test: setup
	@.venv/bin/python -m pytest -q
