"""Export a Plan as files other tools run: a compose file, a swarm stack, Kubernetes manifests.

Pure functions from plans to plain data and YAML text; nothing here talks to Docker or a cluster.
"""

from .common import ImageInfo, plan_hash
from .compose import compose_dict, compose_yaml

__all__ = ["ImageInfo", "plan_hash", "compose_dict", "compose_yaml"]
