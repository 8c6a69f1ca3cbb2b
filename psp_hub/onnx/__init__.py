"""PSP-GAN in ONNX: the exported graphs (`graphs`), the export (`export`, `python -m psp_hub.export_onnx`) and the
onnxruntime backend the pipeline runs on (`backend.OnnxBackend`).

Nothing is imported here, so exporting does not load onnxruntime and the backend does not load the exporter's
graph modules until asked.
"""
