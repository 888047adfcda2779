"""harness.miniworld.qwen.main."""
