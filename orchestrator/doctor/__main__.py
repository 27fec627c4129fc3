"""`python -m orchestrator.doctor`: the doctor without the CLI (e.g. inside `ip netns exec`)."""

import sys

from orchestrator.doctor.gather import main

sys.exit(main())
