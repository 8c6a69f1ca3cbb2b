"""Upload a built dataset folder to the Hugging Face Hub as a dataset repository."""

from __future__ import annotations

from pathlib import Path

BUILD_STATE_DIR = ".build"


def push_to_hub(folder: Path, repo_id: str, private: bool = False, token: str | None = None, api=None) -> str:
    """Create (if needed) the dataset repo and upload shards, card and report; the build cache stays local."""
    from huggingface_hub import HfApi

    api = api or HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id,
        repo_type="dataset",
        folder_path=str(folder),
        ignore_patterns=[f"{BUILD_STATE_DIR}/*", "*.tmp"],
        commit_message="Upload PSP-GAN face dataset (train/build_dataset.py)",
    )
    return str(getattr(info, "commit_url", info))
