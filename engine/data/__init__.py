"""Data: reading dataset files, detecting their format, chat templates, tokenising with loss masks.

Heavy package (uses `datasets` and a tokenizer). Modules:
- formats: read rows from files / folders / hub ids, detect the format, convert to messages.
- templates: the tokenizer's own chat template or a built-in one.
- encode: messages -> input_ids + labels with prompt tokens masked (-100).
- pipeline: the datasets of a run config -> train / validation examples, with a report.
"""
