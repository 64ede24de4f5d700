import TrickleRelaySupport
/// A request path below the server's base path, parsed (`trickle-protocol.md` §2).
enum TrickleRoute: Equatable {
    /// `{base}{channel}`
    case channel(String)
    /// `{base}{channel}/{seq}`, seq ≥ -2
    case segment(String, seq: Int)
    /// `{base}{channel}/next`
    case next(String)
    /// Not a trickle path, or a bad seq: answered 404 or 400 with this reason.
    case invalid(status: Int, reason: String)

    init(path rawPath: String, basePath: String) {
        var path = Substring(rawPath)
        if let mark = path.firstIndex(of: "?") { path = path[..<mark] }
        guard path.hasPrefix(basePath) else {
            self = .invalid(status: 404, reason: "not under the base path \(basePath)")
            return
        }
        let parts = path.dropFirst(basePath.count).split(separator: "/", omittingEmptySubsequences: false)
        switch parts.count {
        case 1 where !parts[0].isEmpty:
            self = .channel(String(parts[0]))
        case 2 where !parts[0].isEmpty:
            let channel = String(parts[0])
            if parts[1] == "next" {
                self = .next(channel)
            } else {
                // Both reference servers crash the request handler on seq ≤ -3 (§2) and overflow on seq = Int64.max:
                // we answer 400 with the reason instead.
                switch TrickleSeq.parsePath(parts[1]) {
                case .success(let seq): self = .segment(channel, seq: seq)
                case .failure(let error): self = .invalid(status: 400, reason: error.description)
                }
            }
        default:
            self = .invalid(status: 404, reason: "expected {channel} or {channel}/{seq}")
        }
    }
}
