"""duplicity-ng: encrypted, bandwidth-efficient backups in duplicity's on-backend format."""

__version__ = "0.1.0"
