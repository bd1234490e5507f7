"""Models in a worker process (heavy: torch, transformers, peft, bitsandbytes): loading and
quantisation, the fine-tuning methods (peft adapters, bottleneck adapters, freeze, full), stop tokens,
attention kernels and memory telemetry. Only worker processes import this package."""
