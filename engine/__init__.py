"""Whetstone's engine: the work. It never imports gradio or plotly.

Light packages (stdlib + yaml, plus the `tokenizers` library and jinja2 in data/): the UI process and the
CLI import these, and none of them imports torch, transformers, peft, trl, bitsandbytes or accelerate,
or a heavy package, at any depth (tests/test_import_rule.py checks every import statement).
  config/     typed configs: schema (fields, checks), run (RunConfig), method, rl (grpo / ppo), export, chat,
              evaluate, and llamafactory (their training YAML converted to a run config)
  runs/       a run folder and its processes: paths, atomic writes, events, metrics (the metric table),
              progress (the one fold from events to a run's state), store (discovery), processes (the
              one spawn helper), launcher, queue / queue_runner / placement / sweep / compare (many
              runs), the chat / export / evaluation clients, torchrun, failures, trackers (TensorBoard /
              MLflow / W&B / Trackio: where each writes, how to open it)
  data/       dataset names, files, formats, sources, checks, templates (and LLaMA-Factory's, lf_templates),
              encoding, pipeline, pairs, prompts, preview, held-out questions (held_out), the identity
              helper (identity)
  preflight/  what is known before a run: the model list, a model's shape, the memory estimate, the
              method table, the schedule (epochs and steps resolved from the data's size), the disk estimate
  cli/        the headless commands `python app.py` dispatches: train (train, convert), jobs (chat,
              export), many (sweep, compare, queue), tools (launch-script, identity)

Heavy packages (torch, transformers, peft, trl, bitsandbytes): only worker processes import these.
  modeling/   loading and quantisation, adapters (peft + bottleneck), layers, attention, stop tokens,
              telemetry
  train/      the training worker (`python -m engine.train --config saves/<run>/config.yaml`): stages,
              args, collate, loss, optimizers, checkpoints, hooks, ranks, output, rl (grpo / ppo), rewards
  chat/       the chat worker (`python -m engine.chat`), generation, and GGUF files in llama.cpp (gguf)
  export/     the export worker (`python -m engine.export --config ...`): GGUF (and llama.cpp's K-quants),
              Modelfile, model card
  evaluate/   the evaluation worker (`python -m engine.evaluate --config ...`) and ROUGE-L; the report card
              the training worker writes at the end of an SFT run, and the drift ratio
"""
