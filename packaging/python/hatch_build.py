"""Puts the prebuilt binary into the wheel as a script and tags the wheel for the glibc it needs.

scripts/package.sh sets TRICKLE_RELAY_BINARY (the stripped static binary) and TRICKLE_RELAY_PLATFORM_TAG
(manylinux_2_N_x86_64, from the newest GLIBC_2.N symbol version the binary references).
"""

import os

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version, build_data):
        if self.target_name != "wheel":
            return
        binary = os.environ.get("TRICKLE_RELAY_BINARY")
        platform_tag = os.environ.get("TRICKLE_RELAY_PLATFORM_TAG")
        if not binary or not os.path.isfile(binary):
            raise RuntimeError("set TRICKLE_RELAY_BINARY to the built trickle-relay binary (scripts/package.sh does)")
        if not platform_tag:
            raise RuntimeError("set TRICKLE_RELAY_PLATFORM_TAG, e.g. manylinux_2_35_x86_64 (scripts/package.sh does)")
        # The binary is the script itself: pip copies it into the environment's bin/ unchanged (it has no
        # "#!python" line to rewrite), so `trickle-relay` runs with no Python process in between.
        build_data["shared_scripts"][binary] = "trickle-relay"
        build_data["pure_python"] = False
        build_data["tag"] = f"py3-none-{platform_tag}"
