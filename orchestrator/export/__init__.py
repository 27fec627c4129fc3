"""Export a Plan as files other tools run: a compose file, a swarm stack, Kubernetes manifests.

Pure functions from plans to plain data and YAML text; nothing here talks to Docker or a cluster.
`images` (an ImageInfo) defaults to the tags and hardening of `orchestrator.images.catalog`.
"""

from orchestrator.export.common import ImageInfo, plan_hash
from orchestrator.export.compose import compose_dict, compose_yaml
from orchestrator.export.files import KINDS, Exported, export_file
from orchestrator.export.k8s import manifests, manifests_yaml
from orchestrator.export.swarm import stack_dict, stack_yaml

__all__ = ["KINDS", "Exported", "export_file", "ImageInfo", "plan_hash", "compose_dict", "compose_yaml",
           "stack_dict", "stack_yaml", "manifests", "manifests_yaml"]
