"""The export worker (heavy): `python -m engine.export --config export.yaml`: a merged, checked model
folder with GGUF files, an Ollama Modelfile and a model card, or the adapter alone."""
