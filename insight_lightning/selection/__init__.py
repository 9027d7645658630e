"""Prompt selection in Lightning: the data module that builds the selector and hands each step's prompts to every
rank (`data_module`), and the callback that owns the selection state, updates the beliefs from every rank's
outcomes and logs them (`callback`, with `scalar_logging`).

It imports the framework-free `samplers` and `tasks`, Lightning and torch; nothing else of insight_lightning.
"""
