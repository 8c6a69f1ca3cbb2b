"""The shard layout: its columns (one Hub `datasets.Features`) and configs, shared by the builder, card and loader."""

from __future__ import annotations

from datasets import Features, Image, List, Value

FEATURES = Features(
    {
        "image": Image(),  # encoded bytes of the aligned face (WebP/PNG), path = original file name
        "id": Value("string"),  # stable id, `<source>_<n>`
        "identity": Value("string"),  # person label `<source>:<name>`
        "source": Value("string"),
        "age": Value("int32"),  # years, null when the source has no age labels
        "age_group": Value("string"),  # child / teen / young_adult / adult / older / senior / unknown
        "is_older": Value("bool"),  # age >= the build's older threshold; the loader's 30 % stream
        "gender": Value("string"),
        "size": Value("int32"),  # side of the stored square image in pixels
        "native_resolution": Value("int32"),  # source pixels the aligned crop spans (sharpness of the target)
        "sharp_px": Value("int32"),  # measured true sharpness: largest size with real detail (sharpness.py)
        "det_score": Value("float32"),
        "faces_in_photo": Value("int32"),
        "landmarks": List(
            List(Value("float32"), length=2), length=5
        ),  # aligned frame: l-eye, r-eye, nose, l-mouth, r-mouth
        "reference_ids": List(Value("string")),  # ids of this person's other photos (same split), usable as references
        "num_photos": Value("int32"),  # photos of this person in this split, this one included
        "origin": Value("string"),  # the photo in its original dataset
    }
)

GROUPS = ("general", "older")
"""The dataset's configs: every split is sharded as `data/<split>/<group>-*.parquet`, the loader mixes the two."""

STREAM_COLUMNS = ("image", "id", "identity", "is_older", "landmarks", "reference_ids", "size", "age")
"""What the training loader reads from the stream."""
