"""Storage backends (installed as duplicity_ng.backends)."""
