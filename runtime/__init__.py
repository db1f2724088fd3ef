"""The real engine: Llama-family models loaded exactly from Hugging Face checkpoints, paged per-head KV.

Engine (engine.py) batches requests through the model with the shared scheduler and KV policies;
convert/ turns GGUF files into checkpoint folders; train/ and profiling/ serve the shipped tiny model.
"""
