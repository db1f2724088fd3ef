"""experiment=mosaic on backend=runtime: MOSAIC placements executed by Ray worker actors on real models,
each plan also predicted by the simulator with the same measured costs; the comparison is the result."""
