import TrickleRelayBuildInfo

/// What `trickle-relay --version` prints: the version (from the repository's VERSION file), the commit and the build
/// configuration, e.g. `0.4.0 (commit 49f3a17c2d1e, release)`.
enum BuildInfo {
    static let version = String(cString: trickle_relay_build_version())
    static let commit = String(cString: trickle_relay_build_commit())

    #if DEBUG
    static let configuration = "debug"
    #else
    static let configuration = "release"
    #endif

    static let versionLine = "\(version) (commit \(commit), \(configuration))"
}
