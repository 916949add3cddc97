"""REINFORCE training of the learning agents (Algorithm 1) as one pure, compiled function."""
