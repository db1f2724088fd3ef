"""The hostile-input corpus: bad traces, placer inputs, engine limits, requests, checkpoints and configs."""
