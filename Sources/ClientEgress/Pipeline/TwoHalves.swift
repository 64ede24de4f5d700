/// Runs `work` over the two halves of `elements` — the first half in a child task, the second on this one — and
/// joins the second's result onto the first's, so the result is in element order. With fewer than
/// `minimumCount` elements (a second task would cost more than it saves) the whole is done here, in one piece.
///
/// For data read as fast as it can be (a file, stdin): never for the daemon's channels, whose tasks already
/// share the cores.
func inTwoHalves<Element: Sendable, Part: Sendable>(
    _ elements: [Element],
    minimumCount: Int,
    _ work: @escaping @Sendable (ArraySlice<Element>) -> Part,
    joining join: (inout Part, Part) -> Void
) async -> Part {
    guard elements.count >= minimumCount else { return work(elements[...]) }
    let half = elements.count / 2
    async let first = work(elements[..<half])
    let second = work(elements[half...])
    var joined = await first
    join(&joined, second)
    return joined
}
