#ifndef TRICKLE_RELAY_BUILD_INFO_H
#define TRICKLE_RELAY_BUILD_INFO_H

/// The version in the repository's VERSION file, as Package.swift read it at build time.
const char *trickle_relay_build_version(void);

/// The git commit the binary was built from (12 hex digits, "-dirty" with uncommitted changes), or "unknown".
const char *trickle_relay_build_commit(void);

#endif
