"""The chat worker (heavy): `python -m engine.chat`, driven over stdin/stdout by
engine.runs.chat_client; generate loads what a ChatSource names and streams replies."""
