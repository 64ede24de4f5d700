extension ReplaySummary {
    /// Problems listed in the text summary; the JSON summary lists more, and counts them all.
    public static let problemsShownInText = 20

    /// The human summary `replay` prints: counts per type and `data.type`, skipped lines by reason (the first
    /// ``problemsShownInText`` with file:line), sink failures, duplicate ids, the time span — and a hint when most
    /// lines are not JSON. Bounded whatever the input: a garbage file does not print a garbage-sized summary.
    public var text: String {
        var text = "replayed \(self.files.count) file(s): \(self.lines) lines, \(self.telemetry) telemetry\n"
        text += "by type: " + self.byType.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ") + "\n"
        text += "by data.type: " + self.byDataType.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ") + "\n"
        text += "skipped: malformed \(self.malformed), non-object \(self.nonObject), telemetry without an object event \(self.telemetryWithoutObjectEvent), oversize \(self.oversize)\n"
        if self.sinkFailures > 0 {
            text += "not delivered: the sink failed \(self.sinkFailures) batches, \(self.sinkFailedEvents) telemetry events\n"
        }
        if !self.problemsByReason.isEmpty {
            text += "skipped by reason: " + self.problemsByReason.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ") + "\n"
        }
        for problem in self.problems.prefix(Self.problemsShownInText) {
            text += "  \(problem.file):\(problem.line.map(String.init) ?? "-"): \(problem.reason)\(problem.detail.isEmpty ? "" : " (\(problem.detail))")\n"
        }
        let unshown = self.problems.count - min(self.problems.count, Self.problemsShownInText) + self.problemsNotListed
        if unshown > 0 { text += "  … and \(unshown) more (--summary json lists the first \(Self.maximumProblemsListed))\n" }
        if self.lines > 0, self.malformed * 2 > self.lines {
            text += "hint: most lines are not JSON: input must be JSON Lines, one object per line (a pretty-printed file converts with `jq -c . FILE`)\n"
        }
        if self.duplicates == 0 {
            text += "duplicate ids: none\n"
        } else {
            let shown = self.duplicateIDs.prefix(5).joined(separator: ", ")
            text += "duplicate ids: \(self.duplicates) repeats of \(self.distinctDuplicatedIDs) distinct ids (first: \(shown)\(self.distinctDuplicatedIDs > 5 ? ", …" : ""))\n"
        }
        text += "time span: \(Double(self.spanMilliseconds) / 1000) s\n"
        return text
    }
}
