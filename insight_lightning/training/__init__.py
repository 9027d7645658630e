"""Training: the trained policy as one object (`policy`: model, tokenizer, prompt encoder and rollout engine).

It may import every package below it: `policy`, `rollout`, `selection`, `checkpoints`, `samplers`, `tasks`.
"""
