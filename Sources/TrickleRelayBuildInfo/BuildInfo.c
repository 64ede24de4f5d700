// Build facts Package.swift passes in as C defines: a C target is the one place SwiftPM lets a manifest hand a
// string to the compiler (Swift's -D takes names, not values).
#include "TrickleRelayBuildInfo.h"

#ifndef TRICKLE_RELAY_VERSION
#define TRICKLE_RELAY_VERSION "0.0.0"
#endif

#ifndef TRICKLE_RELAY_GIT_COMMIT
#define TRICKLE_RELAY_GIT_COMMIT "unknown"
#endif

const char *trickle_relay_build_version(void) { return TRICKLE_RELAY_VERSION; }

const char *trickle_relay_build_commit(void) { return TRICKLE_RELAY_GIT_COMMIT; }
