"""PSP-GAN in ONNX: the exported graphs (`graphs`), the export (`export`, `python -m psp_hub.export_onnx`), the
gate that runs an output's own nodes only when asked (`optional_output`, for the per-reference shares) and the
onnxruntime backend the pipeline runs on (`backend.OnnxBackend`).

Nothing is imported here, so exporting does not load onnxruntime and the backend does not load the exporter's
graph modules until asked.
"""
