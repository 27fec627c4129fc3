"""The labels of an IOC image: the OCI annotation keys (`org.opencontainers.image.*`) and iocfleet's own.

Pure. Each OCI key carries what the image-spec says it means (annotations.md); a key whose meaning we
cannot fill honestly is left out rather than filled with something else: no `source` (it is a URL to
the source, which a local checkout does not have), no `revision` (a VCS revision, not our content
digest), no `base.digest` (a manifest digest; a locally built base has only an image id, which goes
into `org.iocfleet.image.base-id`), no `licenses` (the image bundles several licences).
"""

from __future__ import annotations

from datetime import datetime, timezone

OCI = "org.opencontainers.image"
LABEL_PREFIX = "org.iocfleet.image"

_SERVERS = {
    "caproto": "caproto's asyncio Channel Access server",
    "softioc": "pythonSoftIOC (EPICS base IOC with the rsrv Channel Access server)",
}


def image_labels(runtime: str, source_digest: str, base_ref: str, base_id: str, wheels: list[str] | tuple[str, ...],
                 version: str, created: datetime | None = None) -> dict[str, str]:
    """Every label of one runtime's image."""
    created = created or datetime.now(timezone.utc)
    return {
        f"{OCI}.title": f"iocfleet IOC ({runtime})",
        f"{OCI}.description": f"Serves the PVs of one iocfleet-planned IOC with {_SERVERS.get(runtime, runtime)}; "
                              "the IOC is read from IOCFLEET_IOC",
        f"{OCI}.version": version,  # the iocfleet release that built it (the IOC program's version)
        f"{OCI}.created": created.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),  # RFC 3339
        f"{OCI}.vendor": "iocfleet",
        f"{OCI}.base.name": base_ref,  # the image reference this image is built FROM
        f"{LABEL_PREFIX}.runtime": runtime,
        f"{LABEL_PREFIX}.source": source_digest,
        f"{LABEL_PREFIX}.base": base_ref,
        f"{LABEL_PREFIX}.base-id": base_id,
        f"{LABEL_PREFIX}.wheels": " ".join(wheels),
    }
