public import HTTPTypes
import TrickleRelaySupport

/// The header names of the trickle protocol (`trickle-protocol.md` §3).
public enum TrickleHeaders {
    /// The seq actually served (GET replies, 470 replies, POST replies).
    public static let seq = HTTPField.Name("Lp-Trickle-Seq")!
    /// nextWrite as seen by the server.
    public static let latest = HTTPField.Name("Lp-Trickle-Latest")!
    /// `terminated` when the channel is closed.
    public static let closed = HTTPField.Name("Lp-Trickle-Closed")!
    /// On a POST: close every retained segment below this one (a restarting publisher).
    public static let reset = HTTPField.Name("Lp-Trickle-Reset")!
    /// On the channel create POST: the channel's MIME type.
    public static let expectContent = HTTPField.Name("Expect-Content")!
    /// The status a server answers for a seq it does not retain (§4).
    public static let notRetainedStatus = 470
    /// The value of `Lp-Trickle-Closed`.
    public static let closedValue = "terminated"
}
