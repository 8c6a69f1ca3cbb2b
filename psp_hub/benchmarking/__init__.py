"""Speed and memory of the model itself: `forward` times it (`python -m psp_hub.benchmark`), `peak_memory` measures
a block's peak (GPU allocated or CPU RSS). Whole-pipeline and training benchmarks are scripts in benchmarks/."""
