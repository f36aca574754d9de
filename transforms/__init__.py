"""Reusable Beam transforms: read a corpus, embed it, write embeddings and dead letters."""
