# The two commands a researcher needs: `make benchmark LOSS=batch_hard` and `make test`.
# Each creates (once) and reuses the local virtual environment .venv.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

LOSS ?=
DATASET ?= glyphs
PROTOCOL ?= quick
TRIALS ?=
REPS ?=
SEED ?=
STORAGE ?=
# where datasets, results and reports live (default: datasets/, results/, reports/ here)
DATA_ROOT ?=
RESULTS ?=
REPORTS ?=

LOCATION_OPTS := $(if $(DATA_ROOT),--data-root "$(DATA_ROOT)") $(if $(RESULTS),--results "$(RESULTS)") \
	$(if $(REPORTS),--reports "$(REPORTS)")
# everything but the loss, shared by `benchmark` (one loss) and `zoo` (all of them)
BENCH_OPTS := --dataset "$(DATASET)" --protocol "$(PROTOCOL)" \
	$(if $(TRIALS),--trials $(TRIALS)) $(if $(REPS),--reps $(REPS)) $(if $(SEED),--seed $(SEED)) \
	$(if $(STORAGE),--storage "$(STORAGE)") $(LOCATION_OPTS)

.PHONY: benchmark zoo test leaderboard report datasets lint bench-metrics bench-losses bench-data bench-training clean-venv

$(VENV)/.runtime: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

benchmark: $(VENV)/.runtime
	@test -n "$(LOSS)" || { echo "usage: make benchmark LOSS=<loss> (see: $(BIN)/harness --help)"; exit 2; }
	$(BIN)/harness benchmark --loss "$(LOSS)" $(BENCH_OPTS)

# The untrained baseline and every registered loss, one after the other, into one table; losses that
# already have a complete run under this protocol are skipped, so an interrupted zoo continues.
zoo: $(VENV)/.runtime
	for loss in none $$($(BIN)/harness losses --names); do \
		$(BIN)/harness benchmark --if-missing --loss "$$loss" $(BENCH_OPTS) || exit 1; \
	done

test: $(VENV)/.dev
	$(BIN)/python -m pytest -q

leaderboard report: $(VENV)/.runtime
	$(BIN)/harness leaderboard $(if $(RESULTS),--results "$(RESULTS)") $(if $(REPORTS),--reports "$(REPORTS)")

# every dataset: present or not, where the harness looked, counts, official or not, version
datasets: $(VENV)/.runtime
	$(BIN)/harness datasets $(if $(DATA_ROOT),--data-root "$(DATA_ROOT)")

lint: $(VENV)/.dev
	$(BIN)/ruff check harness losses tests benchmarks

bench-metrics: $(VENV)/.dev
	$(BIN)/python benchmarks/metrics.py

bench-losses: $(VENV)/.dev
	$(BIN)/python benchmarks/losses.py

bench-data: $(VENV)/.dev
	$(BIN)/python benchmarks/data.py

bench-training: $(VENV)/.dev
	$(BIN)/python benchmarks/training.py

clean-venv:
	rm -rf $(VENV)
