"""Training the shipped tiny byte-level model: stdlib corpus, synthetic retrieval tasks, the loop.

Entry point: experiments/train_tiny_lm.py; evaluation of retrieval and perplexity in evaluate.py.
"""
