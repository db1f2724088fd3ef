"""FlexiCache experiments (issue 4): GPU KV memory, offline throughput, online serving, rerank cost, sensitivity."""
