"""The standard wrapper stack around a storage backend, outermost first:

    DryRun (--dry-run only) > Retry > AtomicPut (where the backend can rename) > Verify > storage

Retry sits above AtomicPut so that every attempt is a whole new temp-upload-verify-rename;
Verify sits below AtomicPut so that the temporary file is checked before it replaces anything.
Tests insert a fault injector between Verify and the storage (tests/faults.py).
"""

from __future__ import annotations

from collections.abc import Callable

from duplicity_ng.backends.base import Backend, capabilities_of
from duplicity_ng.backends.dryrun import DryRunBackend
from duplicity_ng.backends.options import BackendOptions
from duplicity_ng.backends.retry import RetryBackend
from duplicity_ng.backends.verify import AtomicPutBackend, VerifyBackend


def wrap(
    backend: Backend,
    options: BackendOptions,
    *,
    warn: Callable[[str], None] | None = None,
    note: Callable[[str], None] | None = None,
) -> Backend:
    caps = capabilities_of(backend)
    wrapped: Backend = VerifyBackend(backend)
    if caps.rename:
        # Even where put is atomic by itself (file://): the new file is verified under a
        # temporary name before it replaces the old one.
        wrapped = AtomicPutBackend(wrapped)
    wrapped = RetryBackend(wrapped, options.num_retries, options.retry_delay, warn=warn)
    if options.dry_run:
        wrapped = DryRunBackend(wrapped, note=note)
    return wrapped
