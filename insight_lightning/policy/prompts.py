"""Turning a task's prompt (text or chat messages) into left-padded token ids for the policy."""

from __future__ import annotations

import torch
from torch import Tensor

from tasks.base import Prompt


class PromptEncoder:
    """Renders prompts with the tokenizer's chat template when they are messages, and tokenizes batches."""

    def __init__(
        self, tokenizer, chat_template_kwargs: dict | None = None, max_prompt_tokens: int | None = None
    ) -> None:
        self.tokenizer = tokenizer
        self.chat_template_kwargs = chat_template_kwargs or {}
        self.max_prompt_tokens = max_prompt_tokens
        self.last_truncated = 0

    def render(self, prompt: Prompt) -> str:
        """The exact text the model continues from."""
        if isinstance(prompt, str):
            return prompt
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                prompt, tokenize=False, add_generation_prompt=True, **self.chat_template_kwargs
            )
        # A tokenizer without a chat template gets the messages' contents, one per line.
        return "\n".join(message["content"] for message in prompt)

    def encode(self, texts: list[str], device: torch.device) -> tuple[Tensor, Tensor]:
        """Left-padded ids [b, P] and attention mask [b, P]; prompts over the limit keep their last tokens."""
        # Chat-rendered text already carries the template's special tokens; plain text gets the tokenizer's own.
        add_special = not getattr(self.tokenizer, "chat_template", None)
        encoded = self.tokenizer(texts, add_special_tokens=add_special, padding=True, return_tensors="pt")
        ids, mask = encoded["input_ids"], encoded["attention_mask"]  # [b, P]
        self.last_truncated = 0
        if self.max_prompt_tokens and ids.shape[1] > self.max_prompt_tokens:
            self.last_truncated = int((mask.sum(dim=1) > self.max_prompt_tokens).sum())
            ids, mask = ids[:, -self.max_prompt_tokens :], mask[:, -self.max_prompt_tokens :]
        return ids.to(device), mask.to(device)
