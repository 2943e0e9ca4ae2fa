"""The shipped policies, copied where a local or test controller may read (and a spec rewrite) them.

The controller loads the files named by `controller.policies.Policy` and
ignores the Rego tests beside them; a copy holds exactly those files.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Final

from controller.policies import Policy

SHIPPED_POLICIES: Final = Path(__file__).resolve().parent.parent / "policies"


def shipped_policy_texts() -> dict[str, str]:
    """File name -> text of each policy the controller loads."""
    return {policy.file_name: (SHIPPED_POLICIES / policy.file_name).read_text() for policy in Policy}


def copy_shipped_policies(directory: Path) -> Path:
    """Copies the policies the controller loads (not their tests) into `directory`; returns it."""
    directory.mkdir(parents=True, exist_ok=True)
    for policy in Policy:
        shutil.copy(SHIPPED_POLICIES / policy.file_name, directory / policy.file_name)
    return directory
