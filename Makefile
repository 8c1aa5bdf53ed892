# The README's commands. Each target makes .venv and installs what it needs first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench bench-quality bench-classify clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# The main job: train the character LM on Shakespeare for about 5 minutes, then sample at two temperatures.
# It replaces runs/demo (the demo's own folder) each time. Five minutes see 1.6 epochs of the 5 MB text, too few
# to overfit, so the demo drops dropout: 1.652 nats/char after 901 steps here (step 600: 1.698, 1.720 with 0.3).
DEMO := runs/demo
demo: $(STAMP)
	rm -rf $(DEMO)
	$(BIN)/unrolled lm train --dataset shakespeare --out $(DEMO) --max-time 5m --eval-every 200 --dropout 0
	@echo "--- sample, temperature 0.5 ---"
	$(BIN)/unrolled lm sample $(DEMO) --prime "ROMEO:" --length 400 --temperature 0.5 --seed 1
	@echo "--- sample, temperature 1.0 ---"
	$(BIN)/unrolled lm sample $(DEMO) --prime "ROMEO:" --length 400 --temperature 1.0 --seed 1
	@echo "learning curve: $(DEMO)/curve.png   metrics: $(DEMO)/metrics.jsonl"

lint: $(STAMP)
	$(BIN)/ruff check unrolled tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/recurrent_speed.py
	$(BIN)/python bench/lm_speed.py

BENCH_STAMP := $(VENV)/.installed-bench
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,bench]'
	touch $(BENCH_STAMP)

# About 25 minutes: MR sentence classification, CNN and BiLSTM x 3 seeds, beside TF-IDF + logistic regression.
bench-classify: $(BENCH_STAMP)
	$(BIN)/python bench/classify_mr.py

# About an hour: 30 minutes of our char LM on tinyshakespeare, then 30 of the plain PyTorch loop.
bench-quality: $(STAMP)
	$(BIN)/python bench/lm_quality.py --minutes 30 --peer-minutes 30 -- --no-progress

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
