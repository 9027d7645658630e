"""Rollout engines: what turns prompts into K completions each. `engine` holds the engine interface, the batch it
returns and Hugging Face generate; `vllm_colocated` and `vllm_server` the vLLM engines, with `vllm_sync` the settings,
requests and weight sync they share; `scoring` runs the task's verifier over a batch of completions.

It imports `policy` (the errors of a diverged policy), the framework-free `tasks`, torch and transformers (vLLM only
when an engine is built); nothing else of insight_lightning.
"""
