"""The trickle-relay binary, installed by this wheel into the environment's scripts directory."""

import os
import sys
import sysconfig


def find_binary() -> str:
    """The installed `trickle-relay` binary's path (the environment's scripts directory, or the user scheme's)."""
    name = "trickle-relay"
    candidates = [os.path.join(sysconfig.get_path("scripts"), name)]
    user_scheme = f"{os.name}_user"
    if user_scheme in sysconfig.get_scheme_names():
        candidates.append(os.path.join(sysconfig.get_path("scripts", scheme=user_scheme), name))
    for candidate in candidates:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(f"{name} is not installed beside this Python package (looked in {', '.join(candidates)})")


def main() -> None:
    """`python -m trickle_relay ARGS`: replaces this process with the binary (no wrapper stays running)."""
    binary = find_binary()
    os.execv(binary, [binary, *sys.argv[1:]])
