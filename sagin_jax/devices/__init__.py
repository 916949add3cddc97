"""Seeds on devices: the seed mesh and the run axis of batched programs (below every layer that
generates, simulates or trains, so each of them can place its seed batches)."""
