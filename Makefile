# One venv, one install stamp; every target that runs code depends on `install`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp


.PHONY: install lock check run cohorts-demo cohorts-worker cohorts-pull cohorts-status bench-cohorts test test-fast lint kafka kafka-stop taxonomy topics replay replay-dlq backfill report bench bench-stages bench-ingest clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,chart]'
	touch $(STAMP)

## make run: the whole path locally (broker, Amplitude service, sample traffic, worker), its counts, then the
## reconciliation report of what it just did and its chart (.local/demo-report.png)
run: install
	$(BIN)/forwarder demo

## make cohorts-demo: an Amplitude cohort of 5,000 users synced to a MoEngage segment (pull), then 300 leave and
## 200 join (webhooks); prints both sides and checks the segment equals the members MoEngage knows
cohorts-demo: install
	$(BIN)/forwarder cohorts demo

## make cohorts-worker / make cohorts-status / make cohorts-pull COHORTS="id1 id2" [ALL=1] [IF_CHANGED=1] [SCHEDULE=daily]
cohorts-worker: install
	$(BIN)/forwarder cohorts worker

cohorts-status: install
	$(BIN)/forwarder cohorts status

cohorts-pull: install
	@test -n "$(COHORTS)$(ALL)" || { echo "usage: make cohorts-pull COHORTS=\"<id> ...\" | ALL=1 [IF_CHANGED=1] [SCHEDULE=hourly|daily]"; exit 2; }
	$(BIN)/forwarder cohorts pull $(foreach c,$(COHORTS),--cohort $(c)) $(if $(ALL),--all) $(if $(IF_CHANGED),--if-changed) $(if $(SCHEDULE),--schedule $(SCHEDULE))

## make test: the whole suite, including the tests on a real Apache Kafka broker; two processes (a broker each),
## each test file on one of them (module fixtures stay whole)
test: install
	$(BIN)/python -m pytest -n 2 --dist loadfile

## make test-fast: the pure core and the HTTP edges only (no broker)
test-fast: install
	$(BIN)/python -m pytest -m "not kafka"

lint: install
	$(BIN)/ruff check forwarder schemas devkit tests bench
	$(BIN)/ruff format --check forwarder schemas devkit tests bench
	$(BIN)/mypy

## make kafka / make kafka-stop: a local broker in the background; the last line is its address
kafka: install
	@$(BIN)/forwarder kafka start

kafka-stop:
	@if [ -x $(BIN)/forwarder ]; then $(BIN)/forwarder kafka stop; else echo "no local broker was running"; fi

## make lock: docker/requirements.lock, the image's dependencies pinned with hashes (uv), stamped with pyproject's
lock: install
	$(BIN)/uv pip compile pyproject.toml --generate-hashes --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --no-header -q -o docker/requirements.lock
	$(BIN)/python -m devkit.lockfile stamp

## make check: Kafka, the topics, Amplitude's key and residency, MoEngage's credentials, before the first event
check: install
	$(BIN)/forwarder check

## make taxonomy [APPLY=1]: the forwarded event types in Amplitude's taxonomy (category MoEngage, Delivery events
## inactive): the differences (exit 3), or with APPLY=1 create and update them
taxonomy: install
	$(BIN)/forwarder taxonomy $(if $(APPLY),--apply)

## make topics [APPLY=1]: create the topics, or report (and with APPLY=1 fix) drift
topics: install
	$(BIN)/forwarder topics $(if $(APPLY),--apply)

## make replay FROM=2026-11-01T00:00:00Z TO=2026-11-02T00:00:00Z [EVENTS=Email] [DRY_RUN=1]
replay: install
	@test -n "$(FROM)" -a -n "$(TO)" || { echo "usage: make replay FROM=<ISO time> TO=<ISO time> [EVENTS=...] [DRY_RUN=1]"; exit 2; }
	$(BIN)/forwarder replay --from "$(FROM)" --to "$(TO)" $(if $(EVENTS),--events "$(EVENTS)") $(if $(DRY_RUN),--dry-run)

## make replay-dlq [REASON=invalid_field] [DRY_RUN=1]
replay-dlq: install
	$(BIN)/forwarder replay-dlq $(if $(REASON),--reason "$(REASON)") $(if $(DRY_RUN),--dry-run)

## make backfill PATHS="exports/ more.jsonl.gz" [EVENTS=Email] [FROM=...] [TO=...] [DRY_RUN=1] [RESTART=1]
backfill: install
	@test -n "$(PATHS)" || { echo "usage: make backfill PATHS=<files or folders> [EVENTS=...] [FROM=...] [TO=...] [DRY_RUN=1] [RESTART=1]"; exit 2; }
	$(BIN)/forwarder backfill $(PATHS) $(if $(EVENTS),--events "$(EVENTS)") $(if $(FROM),--from "$(FROM)") $(if $(TO),--to "$(TO)") $(if $(DRY_RUN),--dry-run) $(if $(RESTART),--restart)

## make report [FROM=2026-11-01T00:00:00Z] [TO=2026-11-02T00:00:00Z] [BY=campaign|code|hour|day] [FORMAT=table|csv|json]
##             [CHART=report.png] [AMPLITUDE=1]: what came in, what was delivered, why the rest was not
report: install
	$(BIN)/forwarder report $(if $(FROM),--from "$(FROM)") $(if $(TO),--to "$(TO)") $(if $(BY),--by "$(BY)") $(if $(FORMAT),--format "$(FORMAT)") $(if $(CHART),--chart "$(CHART)") $(if $(AMPLITUDE),--amplitude)

## make bench: worker vs read ceiling vs the official SDK, latency, scale-out, peak RSS (JSON summary last)
bench: install
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	$(BIN)/python -m bench.run $(BENCH_ARGS)

## make bench-stages: CPU per event of each stage of the worker (decode, map, encode, HTTP, ...), as a table
bench-stages: install
	$(BIN)/python -m bench.stages $(BENCH_ARGS)

## make bench-cohorts: the cohort worker with a 2,000,000-member cohort at MoEngage's 300 requests/minute:
## members/s, first sync and diff, peak RSS (JSON last)
bench-cohorts: install
	$(BIN)/python -m bench.cohorts $(BENCH_ARGS)

## make bench-ingest: load on the ingestion endpoint over loopback
bench-ingest: install
	$(BIN)/python -m bench.ingest_load $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .local
