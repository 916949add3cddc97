"""Node-selection policies. A policy is a pair of pure functions (see ``base.NodePolicy``)."""
from sagin_jax.policies.base import NodeContext, NodePolicy  # noqa: F401
