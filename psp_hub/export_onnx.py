"""Export PSP-GAN to ONNX: `python -m psp_hub.export_onnx --model ID_OR_PATH --out model.onnx [--refs K] [--cached]`."""

from psp_hub.onnx.export import main

if __name__ == "__main__":
    raise SystemExit(main())
