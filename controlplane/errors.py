"""What goes wrong in the domain, in words a user reads, without any surface's wire format.

Domain modules raise these; each surface maps them in one place: the Hub JSON API (api/errors.py: a status, the
`error` field, X-Error-Code), the dashboard (an HTML error page, dashboard/__init__.py), git's and LFS's answers
(gitserver.py, lfs/api.py) and the CLI (cli.py prints the message). `code` is the stable machine name the Hub's
clients branch on (X-Error-Code: RepoNotFound, RepoExists, ...); None where the Hub sends none.
"""

from __future__ import annotations


class DomainError(Exception):
    def __init__(self, message: str, code: str | None = None, extra: dict | None = None) -> None:
        super().__init__(message)
        self.message, self.code = message, code
        self.extra = extra or {}  # facts for the answer, e.g. the existing Space's `url` when a name is taken


class InvalidInput(DomainError):
    """The request names something impossible: a bad name, key, URL, filter."""


class Unauthenticated(DomainError):
    """No caller, or a credential that is unknown, revoked, or of a disabled account."""


class Forbidden(DomainError):
    """A known caller that may not do this (another owner's Space, a read token writing)."""


class QuotaExceeded(Forbidden):
    """Allowed in general, but over the owner's quota of hardware or spending."""


class NotFound(DomainError):
    """Missing, or not disclosed to this caller."""


class SpaceNotFound(NotFound):
    def __init__(self, full_name: str) -> None:
        # Same answer for "missing" and "private and not yours": the existence of private Spaces is not disclosed.
        super().__init__(f"Repository Not Found for url: {full_name}. Check the name or your token.", "RepoNotFound")


class Conflict(DomainError):
    """The current state forbids it (a key already used as a secret, a build that cannot be served)."""


class NameTaken(Conflict):
    """A Space or user name already in use (regardless of case)."""


class Outdated(DomainError):
    """Based on a state that has moved on (a commit whose parent is no longer the branch's head)."""


class TooLarge(DomainError):
    """Over a size limit (a file, a commit, a repository)."""


class Incomplete(DomainError):
    """Well-formed, but refers to what is not there yet (an LFS object not uploaded)."""


class Gone(DomainError):
    """It existed and was removed for good (a rolled-back build's image)."""


class Failed(DomainError):
    """An operation of the platform failed (git, the engine): not the caller's mistake."""


class Unavailable(DomainError):
    """Withheld for now: a dependency is missing; trying later may work."""
