"""beam-embed's command line pipeline: read a corpus, embed it, write embeddings."""
