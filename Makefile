# AeroGuard developer commands. The two that matter: `make run` and `make test`; both run
# `make setup` first, which is idempotent and takes about a second once everything is in place.
# Ports and the state folder are variables: `make up WEB_PORT=8080 REDIS_PORT=6380`
# (also ZK_PORTS=2181,2182,2183, ZK_PEER_PORTS, ZK_ELECTION_PORTS, WEB_WORKERS, AEROGUARD_RUN_DIR).
# `make up REDIS=sentinel`: a master, a replica and 3 Sentinels instead of one Redis
# (REDIS_REPLICA_PORT=6380, SENTINEL_PORTS=26379,26380,26381); the web tier then waits for the replica.
# `make up REDIS=cluster`: a Redis Cluster of 3 masters and 3 replicas (CLUSTER_PORTS=7000,...,7005,
# bus ports +10000) instead of one Redis; the web tier uses the cluster client (REDIS_CLUSTER_NODES).
SHELL := /bin/bash
VENV_PY := .venv/bin/python
# status/down need only the standard library: they work before setup too.
ANY_PY := $(if $(wildcard $(VENV_PY)),$(VENV_PY),python3)
PYTEST_ARGS ?=

.PHONY: help setup run up status down drill lint test bench fuzz soak backup restore clean distclean train evaluate protos standin swarm-up swarm-test swarm-down

help:
	@echo "make setup   install everything (venv, zookeeper, libssl1.1 for Redis Stack)"
	@echo "make run     the local stack in the foreground until Ctrl-C (sets up first)"
	@echo "make test    the whole test suite against real servers (sets up first)"
	@echo "make lint    ruff: lint and import order (ruff.toml; sets up first)"
	@echo "make up | status | down   the local stack, detached (.run/stack.json)"
	@echo "make drill   the edge fault drill against the \`make up\` stack (started if none runs): table of recovery and invariants"
	@echo "make bench   benchmarks against a fresh local stack"
	@echo "make fuzz    10,000 hostile requests against a private stack: no 5xx, rejections store nothing"
	@echo "make soak MINUTES=60   steady load on a private stack; errors, latency, RSS, memory (out/soak)"
	@echo "make backup | restore [BACKUP=backups/x.rdb]   the running stack's Redis to/from backups/"
	@echo "make train   train the learned detectors on the simulator: a new version in serving/models"
	@echo "make evaluate  the detection evaluation (NAB, SKAB, simulator faults) -> out/eval, docs table"
	@echo "make standin   the TF Serving stand-in on gRPC 8500 / REST 8501 (serving/models)"
	@echo "make bench-detection  /detectar over gRPC to the stand-in: worker RSS, p50/p99 at 200 req/s"
	@echo "make bench-groups  10..400 edge groups against one ZooKeeper ensemble: ZK writes/round, rounds/s, where it bends (out/bench-groups)"
	@echo "make bench-storage  Redis CPU per stored reading and memory per sensor per retention tier (out/bench-storage, docs/capacity.md)"
	@echo "make bench-ingest  readings stored/s via POST /api/v1/readings, one Redis vs 3-master cluster, 1 vs 50 per POST, beside raw TS.ADD"
	@echo "make clean   stop the stack, remove .run/ and caches; distclean also .venv/ .cache/"
	@echo "make swarm-up | swarm-test | swarm-down   docker-stack.yml on a private single-node Swarm (.run/swarm/): deploy, test it, remove it"

setup:
	@bash scripts/setup.sh

run: setup
	$(VENV_PY) -m scripts.stack run

up: setup
	$(VENV_PY) -m scripts.stack up

status:
	@$(ANY_PY) -m scripts.stack status

down:
	@$(ANY_PY) -m scripts.stack down

# DRILL_ARGS="--faults leader_kill9,reconfig --json out/drill.json"; --own-stack for a private stack.
drill: setup
	$(VENV_PY) -m scripts.drill $(DRILL_ARGS)

# Lint and import order, configured in ruff.toml; a few seconds, so CI runs it before the suite.
lint: setup
	$(VENV_PY) -m ruff check .

test: setup
	$(VENV_PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(VENV_PY) -m scripts.bench $(BENCH_ARGS)
	$(VENV_PY) -m scripts.bench_detection $(BENCH_DETECTION_ARGS)
	$(VENV_PY) -m harness.bench_ingest $(BENCH_INGEST_ARGS)

fuzz: setup
	$(VENV_PY) -m scripts.fuzz --requests $(or $(REQUESTS),10000) $(FUZZ_ARGS)

soak: setup
	$(VENV_PY) -m scripts.soak --minutes $(or $(MINUTES),60) $(SOAK_ARGS)

backup:
	$(VENV_PY) -m scripts.backup backup

restore:
	$(VENV_PY) -m scripts.backup restore $(BACKUP)

train: setup
	OMP_NUM_THREADS=1 $(VENV_PY) -m scripts.train $(TRAIN_ARGS)
	$(VENV_PY) -m scripts.grafana_dashboards   # redraw the thresholds of the new version

evaluate: setup
	OMP_NUM_THREADS=1 $(VENV_PY) -m scripts.evaluate --suite --data-dir ../shared/eval/data --out out/eval --table docs/detection.md

# /detectar over gRPC to the TF Serving stand-in: worker RSS and p50/p99 at a fixed rate.
bench-detection: setup
	$(VENV_PY) -m scripts.bench_detection $(BENCH_ARGS)

# Many edge groups (3 real edge nodes each, in a few processes, delivering to a local recorder)
# against one private 3-node ZooKeeper ensemble, stepped up; BENCH_GROUPS_ARGS="--steps 10,50 --window 10".
bench-groups: setup
	$(VENV_PY) -m harness.many_groups $(BENCH_GROUPS_ARGS)

# Redis CPU per stored reading (raw TS.ADD, the ingest scripts, a judged aggregate) and memory per
# sensor per day in each retention tier, on a private Redis; BENCH_STORAGE_ARGS="--readings 20000 --hours 6".
bench-storage: setup
	$(VENV_PY) -m harness.bench_storage $(BENCH_STORAGE_ARGS)

# Edge ingest, readings stored/s through the web tier: one Redis vs a 3-master Redis Cluster, one
# aggregate vs lists of 50 per POST, beside raw pipelined TS.ADD (also the last step of make bench);
# BENCH_INGEST_ARGS="--seconds 8 --threads 3 --list 50".
bench-ingest: setup
	$(VENV_PY) -m harness.bench_ingest $(BENCH_INGEST_ARGS)

# The gRPC client's messages (webapp/inference/aeroguard_tfserving_pb2.py, committed).
protos:
	$(VENV_PY) -m grpc_tools.protoc -I webapp/inference/protos --python_out=webapp/inference webapp/inference/protos/aeroguard_tfserving.proto

standin: setup
	$(VENV_PY) -m scripts.tfserving_standin --port 8500 --rest_api_port 8501 --model_config_file serving/models/models.config --models_dir serving/models

# docker-stack.yml on a private Docker engine and single-node Swarm under .run/swarm/ (docs/deploy.md,
# "Local swarm"). swarm-test runs swarm_tests/ (not collected by `make test`) against the deployed
# stack and fails if it is not deployed. `make swarm-up REDIS=cluster`: storage as a Redis Cluster of
# 3 masters and 3 replicas instead of Redis + Sentinel (deploy/swarm-cluster.yml); CI deploys the default.
swarm-up: setup
	$(VENV_PY) -m scripts.swarm up

swarm-test:
	$(VENV_PY) -m pytest swarm_tests -o testpaths=swarm_tests -v -s $(SWARM_TEST_ARGS)

swarm-down:
	@$(ANY_PY) -m scripts.swarm down

clean:
	@$(ANY_PY) -m scripts.stack down
	rm -rf .run .pytest_cache
	find . -name __pycache__ -type d -not -path "./.venv/*" -prune -exec rm -rf {} +

distclean: clean
	rm -rf .venv .cache
