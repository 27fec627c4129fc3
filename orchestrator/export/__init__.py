"""Export a Plan as files other tools run: a compose file, a swarm stack, Kubernetes manifests.

`files.export_file` reads the fleet file and inspects this host once; everything after that is pure
functions from plans to plain data and YAML text (`compose`, `swarm`, `k8s`, sharing `common`). Nothing
here talks to Docker or a cluster. Names and labels are `plan.identity`'s; `images` (an ImageInfo) defaults
to the tags and hardening of `orchestrator.images.catalog`.
"""

from orchestrator.export.common import ImageInfo, plan_hash
from orchestrator.export.compose import compose_dict, compose_yaml
from orchestrator.export.files import KINDS, Exported, export_file
from orchestrator.export.k8s import manifests, manifests_yaml
from orchestrator.export.swarm import stack_dict, stack_yaml

__all__ = ["KINDS", "Exported", "export_file", "ImageInfo", "plan_hash", "compose_dict", "compose_yaml",
           "stack_dict", "stack_yaml", "manifests", "manifests_yaml"]
