"""Everything that runs the causal language model: loading and its cache, devices, prompts, scoring and
generation, LoRA copies, private module copies for weight editors, forward hooks and per-architecture
facts."""
