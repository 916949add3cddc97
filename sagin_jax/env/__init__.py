"""Online SAGIN allocation as a gymnax environment (optional extra ``env``: gymnax, six).

``SaginEnv`` places one request node per step with the simulator's own functions; ``dynamics``
holds the transitions as pure functions, ``types`` the pytrees."""
from sagin_jax.env.sagin import SaginEnv
from sagin_jax.env.types import (NODE_FEATURES, EnvParams, EnvState, Observation,
                                 ScenarioPool)

__all__ = ["SaginEnv", "EnvParams", "EnvState", "Observation", "ScenarioPool", "NODE_FEATURES"]
