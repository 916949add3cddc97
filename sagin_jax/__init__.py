"""sagin_jax: a JAX-accelerated, vectorised simulator of online network-resource allocation in a
space-air-ground integrated network, with the DDRL-NRA agent and its baselines.

Layout (the architecture, in order): ``scenario`` → ``features`` → ``policies`` → ``embedding`` →
``simulation`` → ``training`` → ``experiments``; ``reference`` is the independent networkx oracle.
"""
__version__ = "0.1.0"
