"""The shipped policies, copied where a local or test controller may read (and a spec rewrite) them.

The controller loads `policy.rego` (`controller.policies`), the signal mode
mappings (`controller.signalmode`) and the cluster registry (`controller.clusters`),
and ignores the Rego tests beside them; a copy holds exactly those files.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Final

from controller.clusters import REGISTRY_FILE_NAME
from controller.policies import POLICY_FILE_NAME
from controller.signalmode import MAPPINGS_FILE_NAME

SHIPPED_POLICIES: Final = Path(__file__).resolve().parent.parent / "policies"


# What the controller reads from its policy directory: the policy (not its Rego tests), the
# signal mode mappings and the cluster registry beside it.
_LOADED: Final = (POLICY_FILE_NAME, MAPPINGS_FILE_NAME, REGISTRY_FILE_NAME)


def shipped_policy_texts() -> dict[str, str]:
    """File name -> text of each file the controller loads from its policy directory."""
    return {name: (SHIPPED_POLICIES / name).read_text() for name in _LOADED}


def copy_shipped_policies(directory: Path) -> Path:
    """Copies the files the controller loads from its policy directory into `directory`; returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in _LOADED:
        shutil.copy(SHIPPED_POLICIES / name, directory / name)
    return directory
