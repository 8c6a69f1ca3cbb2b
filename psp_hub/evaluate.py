"""Evaluate a PSP-GAN model on held-out identities: `python -m psp_hub.evaluate --model ... --data ...`."""

from psp_hub.evaluation.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
