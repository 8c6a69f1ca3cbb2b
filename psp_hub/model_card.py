"""Renders the Hub model card (README.md of a saved model) from the repository's `model_card.md`."""

from __future__ import annotations

from importlib import resources

from huggingface_hub import ModelCard, ModelCardData

DATASETS = ["lfw", "celeba", "utkface"]


def card_data(**overrides) -> ModelCardData:
    """Hub metadata: pipeline, library, licence, tags, datasets, the prior's base model, metrics."""
    values = {
        "library_name": "psp-gan",
        "pipeline_tag": "image-to-image",
        "license": "other",
        "license_name": "non-commercial-research",
        "tags": [
            "face-restoration",
            "super-resolution",
            "reference-based",
            "stylegan2",
            "psp-gan",
            "pytorch_model_hub_mixin",
        ],
        "datasets": DATASETS,
        "base_model": None,
        "metrics": ["psnr", "ssim", "lpips", "identity-similarity"],
    }
    values.update({k: v for k, v in overrides.items() if v is not None})  # None keeps the default
    return ModelCardData(**{k: v for k, v in values.items() if v is not None})


def render_model_card(
    model,
    *,
    repo_id: str = "psp-gan/psp-gan-128",
    trained: bool = False,
    training_summary: str = "",
    metrics_markdown: str = "",
    base_model: str | None = None,
    datasets: list[str] | None = None,
    training_data: str = "",
    **extra,
) -> ModelCard:
    """Fill the template with the model's config; `trained=False` makes the card say plainly it is untrained.
    `datasets` and `training_data` (markdown) replace the 128 px corpus' names and licence text."""
    template = resources.files("psp_hub").joinpath("templates/model_card.md").read_text(encoding="utf-8")
    cfg = model.config
    return ModelCard.from_template(
        card_data(base_model=base_model, datasets=datasets),
        template_str=template,
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        config=cfg,
        depth=cfg.depth,
        fusion_resolutions=", ".join(str(r) for r in cfg.fusion_resolutions),
        num_parameters=f"{model.num_parameters() / 1e6:.2f} M",
        trained=trained,
        training_summary=training_summary,
        metrics_markdown=metrics_markdown,
        training_data=training_data,
        **extra,
    )
