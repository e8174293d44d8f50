"""Provider adapters: canonical (OpenAI Chat Completions) requests in, canonical answers out."""
