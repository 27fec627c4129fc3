"""IOC images: their names and run settings (`catalog`: tags, the IOC UID, hardening, program argv; no
engine), the build (`build`, the one module here that talks to the engine) and its helpers: input hashing
(`inputs`), the Debian base (`debian`), the wheelhouse (`wheelhouse`), the build context (`context`).

The helpers run local tools (mmdebstrap, pip) and compute names, and raise `ImageBuildError`.
"""

from __future__ import annotations

from orchestrator.errors import EXIT_BACKEND, IocfleetError


class ImageBuildError(IocfleetError):
    """A step of an image build failed; the message names the step and how to fix it."""

    exit_code = EXIT_BACKEND
