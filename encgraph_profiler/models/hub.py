"""A model's config.json (and its image processor's files) from the Hugging Face Hub, found the way
vLLM finds them.

Order: the Hugging Face cache first (``try_to_load_from_cache``, which also knows when a file is
known to be missing), then a download of that file alone (``hf_hub_download``); with
``HF_HUB_OFFLINE=1`` the cache only. HF_TOKEN, HF_HOME, HF_HUB_CACHE and HF_ENDPOINT work as
huggingface_hub reads them. Each failure becomes one line that says what to do: a wrong id,
revision or repository is a usage error (exit 2); what the environment must provide (network,
credentials for a gated or private model, a cached copy when offline) is an environment error
(exit 3). Only config files are read: no weights, and never code from the repository.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import EnvironmentProblem, UsageError


@dataclass(frozen=True)
class HubFile:
    path: Path  # the file in the local cache
    commit: str | None  # the snapshot commit it belongs to


def _commit(path: Path) -> str | None:
    """Cached files live at .../snapshots/<commit>/<file>."""
    return path.parent.name if path.parent.parent.name == "snapshots" else None


def fetch_config(
    repo_id: str, revision: str | None = None, filename: str = "config.json", optional: bool = False
) -> HubFile | None:
    """``filename`` of the repository, from the cache or the Hub. An ``optional`` file that the
    repository does not have is None, and so is one that is not in the cache with HF_HUB_OFFLINE=1
    (transformers then takes the defaults too); every other failure is one line, as for config.json."""
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    where = repo_id if revision is None else f"{repo_id} at revision {revision!r}"
    try:
        cached = try_to_load_from_cache(repo_id, filename, revision=revision)
    except HFValidationError:
        raise UsageError(
            f"--model {repo_id!r} is neither a bundled name, a local path nor a Hugging Face id (org/name)"
        ) from None
    if isinstance(cached, str):
        return HubFile(Path(cached), _commit(Path(cached)))
    if cached is not None:  # known from an earlier look-up to be missing at this revision
        if optional:
            return None
        raise UsageError(f"{where} has no {filename} (the Hugging Face cache says so); is it a model repository?")
    offline = bool(getattr(constants, "HF_HUB_OFFLINE", False))
    if offline and optional:
        return None
    if offline:
        raise EnvironmentProblem(
            f"{where} is not in the Hugging Face cache and HF_HUB_OFFLINE=1: fetch it once with "
            f"`hf download {repo_id} {filename}` where there is a network, or unset HF_HUB_OFFLINE"
        )
    return _download(repo_id, revision, filename, optional, where)


def _download(repo_id: str, revision: str | None, filename: str, optional: bool, where: str) -> HubFile | None:
    """``filename`` downloaded alone; each way the Hub can refuse, in one line."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    online = _reachable()
    try:
        path = Path(hf_hub_download(repo_id, filename, revision=revision, local_files_only=not online))
    except GatedRepoError:
        raise EnvironmentProblem(
            f"{repo_id} is gated: accept its terms on its Hugging Face page, then set HF_TOKEN to a token of that "
            "account"
        ) from None
    except RepositoryNotFoundError:
        raise UsageError(
            f"no model {repo_id!r} on the Hugging Face Hub; check the id, or set HF_TOKEN if it is private"
        ) from None
    except RevisionNotFoundError:
        raise UsageError(f"{repo_id} has no revision {revision!r}; give a branch, tag or commit that exists") from None
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        if optional and not online:
            return None  # as with HF_HUB_OFFLINE=1
        raise EnvironmentProblem(
            f"cannot reach the Hugging Face Hub for {where}, and it is not in the cache: check the network "
            "(or HF_ENDPOINT), or point --model at a local copy of the model's config.json"
        ) from None
    except EntryNotFoundError:
        if optional:
            return None
        raise UsageError(f"{where} has no {filename}; is it a model repository?") from None
    except HfHubHTTPError as err:
        status = getattr(getattr(err, "response", None), "status_code", "an error")
        raise EnvironmentProblem(
            f"the Hugging Face Hub answered {status} for {where}; try again later, or use a local copy"
        ) from None
    except OSError as err:
        raise EnvironmentProblem(
            f"cannot fetch {where} from the Hugging Face Hub ({err.__class__.__name__}); check the network"
        ) from None
    return HubFile(path, _commit(path))


def _reachable(timeout_s: float = 3.0) -> bool:
    """Whether the Hub's host answers within ``timeout_s``: without a network, huggingface_hub retries
    for some 20 s before failing; this way the cache is read at once, or the one message says why."""
    import socket
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    url = urlsplit(constants.ENDPOINT)
    try:
        port = url.port or (80 if url.scheme == "http" else 443)
        socket.create_connection((url.hostname or "", port), timeout=timeout_s).close()
    except OSError:
        return False
    return True
