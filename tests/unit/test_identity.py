"""One identity: the docker backend, `up` and every exporter name, label and hash an IOC the same way."""

from __future__ import annotations

from hosts import host
from orchestrator import spec
from orchestrator.export.common import ImageInfo, image_of, labels_of
from orchestrator.export.compose import compose_dict
from orchestrator.plan import identity, planner
from orchestrator.plan.onhost import PlannedFleet
from orchestrator.run.backends.docker import image_ref, run_kwargs
from orchestrator.run.lifecycle import config_hashes

FLEET = """\
fleet: same
network: {interface: lo, base_port: 31070}
iocs:
  - {name: c, runtime: caproto, prefix: 'S:C:', replicas: 2}
  - {name: s, runtime: softioc, prefix: 'S:S:'}
  - {name: i, runtime: image, image: 'registry.example/ioc:1', prefix: 'S:I:'}
"""


def _planned() -> PlannedFleet:
    fleet = spec.parse(FLEET)
    snap = host()
    return PlannedFleet(fleet, snap, planner.plan(fleet, snap), ())


def test_backend_up_and_compose_agree_on_image_labels_name_and_plan_hash():
    planned = _planned()
    info = ImageInfo.from_images()  # the real tags, as the backend uses them
    hashes = config_hashes(planned)
    services = compose_dict(planned.plan, images=info)["services"]
    for ioc in planned.plan.iocs:
        kwargs = run_kwargs(planned.plan.fleet, ioc, hashes[ioc.name])
        assert kwargs["image"] == image_ref(ioc) == image_of(ioc, info) == services[ioc.name]["image"]
        assert kwargs["labels"] == labels_of(planned.plan, ioc, hashes[ioc.name]) == services[ioc.name]["labels"]
        assert kwargs["name"] == f"iocfleet-same-{ioc.name}"
    assert services[identity.REPEATER]["labels"] == identity.repeater_labels("same")
    assert services[identity.REPEATER]["user"] == identity.IOC_USER == kwargs_user()


def kwargs_user() -> str:
    ioc = next(i for i in _planned().plan.iocs if i.runtime == "caproto")
    return run_kwargs("same", ioc, "h")["user"]


def test_the_image_rule_is_the_ioc_image_else_the_runtime_tag():
    planned = _planned()
    refs = {i.name: identity.image_ref(i, lambda runtime: f"ours/{runtime}") for i in planned.plan.iocs}
    assert refs == {"c-1": "ours/caproto", "c-2": "ours/caproto", "s": "ours/softioc", "i": "registry.example/ioc:1"}
