"""Accuracy of the KV policies through the real engine (experiment `runtime_accuracy`)."""
