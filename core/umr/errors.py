"""Exceptions raised by umr. Each message names the offending input and what to do about it."""

from __future__ import annotations


class UMRError(Exception):
    """Base class of every error umr raises on purpose."""


class ModelNotFoundError(UMRError, OSError):
    """A model id could not be resolved to weights (no hub access, typo, missing local files)."""


class UnknownRecipeError(UMRError, ValueError):
    """A recipe name or model id is not in the registry."""


class InputError(UMRError, ValueError):
    """An input could not be read or used (unreadable image, bad path, too large...)."""


class RemoteCodeError(UMRError, PermissionError):
    """A checkpoint runs its own modelling code and the caller did not pass ``trust_remote_code=True``."""


class RemoteServerError(UMRError, ConnectionError):
    """A model server (vLLM, SGLang) could not be reached, kept failing, or refused a request."""


def reject_unknown(owner: str, given: object, valid: object) -> None:
    """Raise ``TypeError`` naming the unknown keyword arguments of ``owner`` and the valid ones.

    Adapters and services call it on their keyword arguments, so a misspelt option is never accepted and
    ignored (``UMREmbedding(modle_name=...)`` would otherwise load the default model silently).
    """
    unknown = sorted(set(given) - set(valid))  # type: ignore[call-overload]
    if unknown:
        raise TypeError(
            f"{owner} got unknown keyword argument(s) {', '.join(map(repr, unknown))}; "
            f"valid: {', '.join(sorted(valid))}"  # type: ignore[call-overload]
        )
