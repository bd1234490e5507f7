"""Data (light: stdlib, yaml, the `tokenizers` library and jinja2; `datasets` only to read a hub id):
turning dataset files into the examples a run trains on, and showing them before it starts.

names (which datasets exist and what a name points to), files (reading .json/.jsonl/.csv/.parquet into
rows), formats (detecting alpaca / sharegpt / messages / preference / text and converting each row),
sources (a name -> its rows and format), checks (every row checked before training), templates (chat
templates), encode (messages -> token ids with prompt tokens masked), pipeline (a run's datasets ->
train / validation examples, with a report), pairs (preference pairs for the trl stages), preview (what
the Dataset tab shows) and light_tokenizer (a tokenizer for the UI process, without transformers).
"""
