"""The one error hierarchy of mbom.

Every error a user can meet is a :class:`MbomError`. ``diagnostics()`` gives the
human message: what was wrong and what to do. The CLI prints it on one line of
stderr; the API returns it as an ``application/problem+json`` body. Third-party
errors are translated at the boundary with ``raise ... from exc``.
"""

from __future__ import annotations

from collections.abc import Sequence


class MbomError(Exception):
    """Base class of every mbom error."""

    #: Short machine-readable identifier, used as the problem ``type`` suffix.
    code = "error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def diagnostics(self) -> str:
        """The message a person reads: what went wrong, then what to do."""
        return f"{self.message} ({self.hint})" if self.hint else self.message


class InvalidInput(MbomError):
    """A value given by the user is malformed (a reference, a digest, a name)."""

    code = "invalid-input"


class NotFound(MbomError):
    """A named model, dataset, team, publisher or deployment does not exist."""

    code = "not-found"

    def __init__(
        self, what: str, ref: str, *, hint: str | None = None, message: str | None = None
    ) -> None:
        super().__init__(message or f"{what} {ref} is not registered", hint=hint)
        self.what = what
        self.ref = ref


class AlreadyExists(MbomError):
    """Something with that identity is registered already."""

    code = "already-exists"

    def __init__(self, what: str, ref: str, *, hint: str | None = None) -> None:
        super().__init__(f"{what} {ref} is already registered", hint=hint)
        self.what = what
        self.ref = ref


class AmbiguousReference(InvalidInput):
    """A bare ``N@V`` names both a model and a dataset."""

    code = "ambiguous-reference"

    def __init__(self, ref: str) -> None:
        super().__init__(
            f"{ref} names both a model and a dataset",
            hint=f"write model:{ref} or dataset:{ref}",
        )
        self.ref = ref


class DuplicateContent(MbomError):
    """The files being registered are byte-identical to a registered version."""

    code = "duplicate-content"

    def __init__(self, digest: str, existing: str) -> None:
        super().__init__(
            f"these files (manifest {digest}) are already registered as {existing}",
            hint="pass --allow-duplicate-content to record them under another name",
        )
        self.digest = digest
        self.existing = existing


class UnsafePath(MbomError):
    """A file tree holds something mbom refuses to hash (escaping link, device, fifo)."""

    code = "unsafe-path"

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}", hint="remove it or register a directory without it")
        self.path = path
        self.reason = reason


class SignatureError(MbomError):
    """A signature is invalid, or cannot be checked."""

    code = "bad-signature"


class MalformedBundle(InvalidInput):
    """An OpenSSF model-signing signature is no bundle mbom can read (JSON, shape, payload)."""

    code = "malformed-bundle"

    def __init__(self, problem: str, *, source: str = "the signature", hint: str | None = None):
        super().__init__(
            f"{source} is not a usable OpenSSF model-signing bundle: {problem}",
            hint=hint
            or "pass the file `model_signing sign key` or `mbom register "
            "--model-signing-key` wrote",
        )
        self.source = source
        self.problem = problem


class LineageCycle(MbomError):
    """An edge would make the lineage cyclic, or make a model its own parent."""

    code = "lineage-cycle"

    def __init__(self, cycle: Sequence[str]) -> None:
        super().__init__(
            "refused: this lineage would be cyclic: " + " -> ".join(cycle),
            hint="a model cannot descend from itself; check the --parent values",
        )
        self.cycle = tuple(cycle)


class PolicyViolation(MbomError):
    """A registration or deployment breaks a team decision or the lineage status."""

    code = "policy-violation"


class PermissionDenied(MbomError):
    """The acting identity's role or team does not allow the operation."""

    code = "permission-denied"


class AuthenticationRequired(MbomError):
    """No valid bearer token was presented to the server."""

    code = "authentication-required"


class ConfigurationError(MbomError):
    """The environment or settings are unusable (database URL, server address)."""

    code = "configuration"


class RemoteError(MbomError):
    """The server answered with an error the client could not map to a local one."""

    code = "remote"


class Conflict(MbomError):
    """The operation clashes with the current state (flagging a flagged model)."""

    code = "conflict"


class AdmissionPending(Conflict):
    """The version is being admitted: it cannot be used (pulled, deployed, a parent) yet."""

    code = "admission-pending"


class FilesNotStored(Conflict):
    """A registration names files the artifact store does not hold (upload them first)."""

    code = "files-not-stored"

    def __init__(self, missing: list[str]) -> None:
        shown = ", ".join(missing[:3]) + (
            f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        )
        super().__init__(
            f"the registry does not hold {len(missing)} file(s) of this manifest: {shown}",
            hint="upload the files first (mbom register PATH does), "
            "or register with --metadata-only for a model held elsewhere",
        )
        self.missing = missing


class InvalidModelCard(InvalidInput):
    """A Hugging Face model card's metadata cannot be read or contradicts itself."""

    code = "invalid-model-card"

    def __init__(self, path: str, problem: str, *, hint: str | None = None) -> None:
        super().__init__(
            f"{path}: {problem}",
            hint=hint or "fix the YAML front matter of the model card (README.md)",
        )
        self.path = path
        self.problem = problem


class NotInHfCache(NotFound):
    """A Hugging Face repository, or the asked revision of it, is not in the local cache."""

    code = "not-in-hf-cache"

    def __init__(
        self, repo_id: str, revision: str, cache_dir: str, *, cached: Sequence[str] = ()
    ) -> None:
        hint = (
            f"cached revisions: {', '.join(cached)}"
            if cached
            else f"download it first with: hf download {repo_id}; or pass --cache-dir"
        )
        MbomError.__init__(
            self,
            f"{repo_id} at revision {revision} is not in the Hugging Face cache {cache_dir}",
            hint=hint,
        )
        self.what = "Hugging Face snapshot"
        self.ref = f"{repo_id}@{revision}"
        self.repo_id = repo_id
        self.revision = revision
        self.cache_dir = cache_dir


class DatabaseBusy(MbomError):
    """Another writer held the registry's write lock for longer than the busy timeout."""

    code = "database-busy"

    def __init__(self, waited: float, *, retry_after: int = 1) -> None:
        super().__init__(
            f"the registry database is busy: another writer held it for more than {waited:g} s",
            hint="try again shortly; MBOM_BUSY_TIMEOUT sets how long to wait",
        )
        self.waited = waited
        self.retry_after = retry_after


class AuditKeyError(ConfigurationError):
    """The audit key is missing, unreadable, or not the key the audit chain was written with."""


class LimitExceeded(InvalidInput):
    """An input is larger, deeper or longer than mbom reads (a document, a card, a list)."""

    code = "limit-exceeded"

    def __init__(self, what: str, problem: str, *, hint: str | None = None) -> None:
        super().__init__(
            f"{what} is too large: {problem}",
            hint=hint or "split it up, or check that it is the document you meant",
        )
        self.what = what
        self.problem = problem


class InvalidBom(InvalidInput):
    """A field of a CycloneDX document is missing or has the wrong type or form."""

    code = "invalid-bom"

    def __init__(self, where: str, problem: str, *, hint: str | None = None) -> None:
        super().__init__(f"{where} {problem}", hint=hint)
        self.where = where
        self.problem = problem


class BlobMismatch(InvalidInput):
    """Bytes sent to the artifact store are not the ones announced (digest or size)."""

    code = "blob-mismatch"

    def __init__(self, expected: str, actual: str, *, hint: str | None = None) -> None:
        super().__init__(
            f"the uploaded content does not match: expected {expected}, received {actual}",
            hint=hint
            or "nothing was stored; check that the file did not change or get cut short "
            "in transit, then upload it again",
        )
        self.expected = expected
        self.actual = actual


class BlobMissing(NotFound):
    """A blob named by its digest is not in the artifact store."""

    code = "blob-missing"

    def __init__(self, digest: str, *, store: str, hint: str | None = None) -> None:
        super().__init__(
            "blob",
            digest,
            message=f"blob {digest} is not in the artifact store {store}",
            hint=hint or "upload the artifact again, or restore the store from a backup",
        )
        self.digest = digest
        self.store = store


class BlobCorrupt(MbomError):
    """A stored blob's bytes no longer hash to its digest: a fault of the server's storage."""

    code = "blob-corrupt"

    def __init__(self, digest: str, problem: str, *, store: str) -> None:
        super().__init__(
            f"blob {digest} in the artifact store {store} is corrupt: {problem}",
            hint="the stored bytes changed after upload; tell the registry's operators, "
            "who restore it from a backup or have it uploaded again",
        )
        self.digest = digest
        self.problem = problem
        self.store = store
