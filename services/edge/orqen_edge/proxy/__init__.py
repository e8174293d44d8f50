"""The stateless proxy families (completions, embeddings, responses, images, audio, ...):
authenticated and metered like chat, forwarded byte for byte through dispatch."""
