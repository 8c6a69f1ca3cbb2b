"""Strict loading for `from_pretrained`: a checkpoint that does not fit fails with the keys named.

huggingface_hub's PyTorchModelHubMixin loads with `strict=False` by default, which would silently leave
missing weights at their random init; this mixin replaces its loader with a checked one.
"""

from __future__ import annotations

import os

from huggingface_hub import constants, hf_hub_download

from .prior_loading import check_state_dict


class HubLoadingMixin:
    """Provides `_from_pretrained` for a PyTorchModelHubMixin model: local folder or Hub id, strict by default."""

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir,
        force_download: bool,
        local_files_only: bool,
        token,
        map_location: str = "cpu",
        strict: bool = True,
        **model_kwargs,
    ):
        from safetensors.torch import load_file

        model = cls(**model_kwargs)
        if os.path.isdir(model_id):
            model_file = os.path.join(model_id, constants.SAFETENSORS_SINGLE_FILE)
            if not os.path.isfile(model_file):
                raise FileNotFoundError(f"{model_id} has no {constants.SAFETENSORS_SINGLE_FILE}")
        else:
            model_file = hf_hub_download(
                repo_id=model_id,
                filename=constants.SAFETENSORS_SINGLE_FILE,
                revision=revision,
                cache_dir=cache_dir,
                force_download=force_download,
                token=token,
                local_files_only=local_files_only,
            )
        state_dict = load_file(model_file, device=str(map_location))
        if strict:
            check_state_dict(model, state_dict, what=f"checkpoint {model_id}")
        model.load_state_dict(state_dict, strict=strict)
        model.eval()
        return model
