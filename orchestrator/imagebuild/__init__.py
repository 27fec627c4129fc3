"""Helpers of `orchestrator.images`: input hashing, the Debian base, the wheelhouse, the build context.

None of these modules imports docker: only `orchestrator/images.py` (and the backends) talk to the
engine. They run local tools (mmdebstrap, pip) and compute names, and raise `ImageBuildError`.
"""

from __future__ import annotations

from orchestrator.errors import EXIT_BACKEND, IocfleetError


class ImageBuildError(IocfleetError):
    """A step of an image build failed; the message names the step and how to fix it."""

    exit_code = EXIT_BACKEND
