"""Cross-cutting pieces: health/readiness, the error endpoint, demo data, load generator."""
