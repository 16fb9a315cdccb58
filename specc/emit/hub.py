"""Publish an emitted corpus to the Hugging Face Hub: a thin call into ``huggingface_hub.HfApi``."""

from __future__ import annotations

import os
import re
from pathlib import Path

from specc.errors import InputError, OutputError

from .manifest import read_manifest
from .shards import CONFIGS, file_sha256

REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
DEFAULT_ENDPOINT = "https://huggingface.co"
TRANSPORT_MODULES = {"httpx", "httpx2", "httpcore", "requests", "urllib3"}


def verify_shards(out_dir: Path, manifest: dict) -> None:
    """Refuse to publish an output whose shards differ from what its manifest recorded."""
    for shard in manifest["shards"]:
        path = out_dir / shard["path"]
        if not path.is_file():
            raise InputError(f"{path} is listed in the manifest but missing; rebuild with `specc build`")
        if file_sha256(path) != shard["sha256"]:
            raise InputError(f"{path} changed since it was built (sha256 mismatch); rebuild with `specc build`")


def _http_error(e, repo: str, endpoint: str) -> OutputError:
    status = getattr(getattr(e, "response", None), "status_code", None)
    if status == 401:
        return OutputError(
            f"{endpoint} rejected the credentials (401): set HF_TOKEN to a token with write access "
            "or run `hf auth login`"
        )
    if status == 403:
        return OutputError(f"{endpoint}: this token may not write to {repo} (403); use a token with write access")
    return OutputError(f"pushing to {repo} on {endpoint} failed: {e}")


def push(
    out_dir: Path,
    repo: str,
    *,
    private: bool = True,
    revision: str | None = None,
    message: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    api=None,
) -> str:
    """Create the dataset repo if needed and upload ``out_dir`` in one commit; returns the commit URL.

    The token comes from ``token``, else ``HF_TOKEN`` or the saved login (huggingface_hub's rules);
    it is sent in a header and never written anywhere.
    """
    out_dir = Path(out_dir)
    if not REPO_ID.match(repo or ""):
        raise InputError(f"repo {repo!r} must look like ORG/NAME")
    manifest = read_manifest(out_dir)
    verify_shards(out_dir, manifest)
    # Read at call time: huggingface_hub reads HF_ENDPOINT once, at import.
    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if api is None:
        api = HfApi(endpoint=endpoint.rstrip("/"), token=token)
    spec = manifest["spec"]
    counts = manifest["counts"]
    message = message or (
        f"specc: {spec['name']} {spec['version']} "
        f"({counts['documents']} documents, {counts['demonstrations']} demonstrations)"
    )
    try:
        api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True)
        if revision and revision != "main":
            api.create_branch(repo, branch=revision, repo_type="dataset", exist_ok=True)
        info = api.upload_folder(
            folder_path=str(out_dir),
            repo_id=repo,
            repo_type="dataset",
            revision=revision,
            commit_message=message,
            # Shards from an earlier push with a different shard count would match `train-*`.
            delete_patterns=[f"{c}/*" for c in CONFIGS],
            # What a build dropped (judge failures included) is for review here, not for publishing; the
            # held-out eval suite must stay off the web, or it stops being held out.
            ignore_patterns=["dropped/*", "eval/*"],
        )
    except HfHubHTTPError as e:
        raise _http_error(e, repo, endpoint) from e
    except OfflineModeIsEnabled as e:
        raise OutputError("HF_HUB_OFFLINE is set; unset it to push") from e
    except OSError as e:
        raise OutputError(f"cannot reach {endpoint} or read {out_dir}: {e}") from e
    except Exception as e:
        # Transport errors come from whichever HTTP client this huggingface_hub version uses.
        if type(e).__module__.split(".")[0] in TRANSPORT_MODULES:
            raise OutputError(f"cannot reach {endpoint}: {e}") from e
        raise
    return getattr(info, "commit_url", None) or str(info)
