"""Forward latency, throughput and peak memory of PSP-GAN: `python -m psp_hub.benchmark [--device cuda]`."""

from psp_hub.benchmarking.forward import main

if __name__ == "__main__":
    main()
