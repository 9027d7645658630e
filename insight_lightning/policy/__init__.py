"""The model being trained, below any engine or loop: loading a Hugging Face, GGUF or tiny model with its LoRA
adapter (`loading`, `gguf_cache`, `tiny`), rendering prompts to token ids (`prompts`), token log-probs in chunks and
with shared prompt prefixes packed once (`logprobs`, `shared_prefix`), FSDP2 sharding (`fsdp`), and the errors of a
policy whose numbers went non-finite (`divergence`).

It imports torch, transformers, peft and the framework-free `tasks`; nothing else of insight_lightning.
"""
