"""The evaluation worker (heavy): `python -m engine.evaluate --config eval.yaml`: loss, perplexity and
ROUGE-L of a run's answers on held-out prompts, beside the base model's."""
