"""storybot: a self-hosted Discord bot for collaborative storytelling with GPT-2."""

__version__ = "0.1.0"
