"""fewshot-bench: one episodic protocol for few-shot image classification methods."""

__version__ = "0.1.0"
