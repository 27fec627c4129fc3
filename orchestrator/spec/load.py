"""Read a fleet file: `load(path)`, `parse(text)` and `from_dict(data)`, each returning a frozen `FleetSpec`.

Each raises `SpecError` listing every problem as `FILE:LINE: field: problem — fix`; `from_dict` is for
data built in code (the pytest plugin). The checks live in `validate.py` (and `pvs.py`, `fields.py`).
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.errors import SpecError
from orchestrator.spec import validate
from orchestrator.spec.model import FleetSpec
from orchestrator.spec.yamlsource import MAX_FILE_BYTES


def load(path: str | Path) -> FleetSpec:
    """Read and validate a fleet file; raise SpecError with one line per problem."""
    source = str(path)
    try:
        # A FIFO or a device would block or never end: read regular files only.
        if Path(path).exists() and not Path(path).is_dir() and not Path(path).is_file():
            raise SpecError([f"{source}:0: file: not a regular file (a pipe or device) — "
                             "give the path of a fleet YAML file"])
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES * 4 + 1)  # UTF-8: at most 4 bytes a character
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise SpecError([f"{source}:0: file: not found — check the path, or create it (see docs/fleet-file.md)"])
    except IsADirectoryError:
        raise SpecError([f"{source}:0: file: is a directory — give the path of a fleet YAML file"])
    except PermissionError:
        raise SpecError([f"{source}:0: file: permission denied — make it readable (chmod a+r) or run as its owner"])
    except UnicodeDecodeError:
        raise SpecError([f"{source}:0: file: not UTF-8 text — save the fleet file as UTF-8 YAML"])
    except OSError as exc:  # a symlink loop, a path through a regular file, a name too long, ...
        raise SpecError([f"{source}:0: file: cannot be read ({exc.strerror or type(exc).__name__}) — "
                         "give the path of a fleet YAML file"])
    if len(data) > MAX_FILE_BYTES * 4:
        raise SpecError([f"{source}:1: file: over {MAX_FILE_BYTES} characters — split the fleet, or use "
                         "`replicas` instead of repeating entries"])
    if "\0" in text:
        raise SpecError([f"{source}:1: file: contains a NUL byte, so it is not a YAML text file — "
                         "give the path of a fleet YAML file"])
    return parse(text, source)


def parse(text: str, source: str = "<string>") -> FleetSpec:
    """Validate fleet-file text; raise SpecError with one line per problem."""
    return validate.validate_text(text, source)


def from_dict(data: dict, source: str = "<dict>") -> FleetSpec:
    """Validate a fleet given as plain Python data (as the YAML would load)."""
    return validate.validate_data(data, source)
