import Foundation

/// One criterion sentence of a trial's eligibility text.
public struct Criterion: Equatable, Sendable {
    public var text: String
    public var inclusion: Bool
    public init(text: String, inclusion: Bool) { self.text = text; self.inclusion = inclusion }
}

/// Splits eligibility text into criterion sentences, each tagged inclusion or exclusion.
///
/// Lines end with LF, CR LF or CR. Paragraphs are separated by blank lines; wrapped lines of a paragraph
/// are joined. A paragraph that is a section heading ("Inclusion Criteria:", "Exclusion criteria",
/// "Key exclusion criteria:" ...) switches the tag (text after the heading's colon is kept as a
/// criterion); leading bullet markers (-, *, •, 1., 1), a)) are removed. Text before any heading counts
/// as inclusion. Paragraphs longer than `maxWords` are split at sentence ends (". " before an upper-case
/// letter or digit) so that the encoder's 256-token window does not cut them. No other text is dropped.
public func splitCriteria(_ text: String, maxWords: Int = 120) -> [Criterion] {
    var out: [Criterion] = []
    var inclusion = true
    var paragraph: [String] = []
    func flush() {
        defer { paragraph = [] }
        var p = paragraph.joined(separator: " ").split(whereSeparator: \.isWhitespace).joined(separator: " ")
        if p.isEmpty { return }
        if let (isInclusion, rest) = heading(stripBullet(p)) {
            inclusion = isInclusion
            p = rest
        }
        p = stripBullet(p)
        if p.isEmpty { return }
        for piece in splitLong(p, maxWords: maxWords) { out.append(Criterion(text: piece, inclusion: inclusion)) }
    }
    // LF, CR LF ("\r\n" is one Character) and a lone CR all end a line.
    for line in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" }) {
        let t = line.trimmingCharacters(in: .whitespaces)
        if t.isEmpty { flush(); continue }
        // A bullet or a heading starts a new paragraph even without a blank line before it.
        if !paragraph.isEmpty && (startsWithBullet(t) || heading(stripBullet(t)) != nil) { flush() }
        paragraph.append(t)
    }
    flush()
    return out
}

/// (isInclusion, text after the heading) when `p` is an inclusion/exclusion heading: at most two words
/// before "inclusion criteria" / "exclusion criteria" ("Key", "Additional", "Part B"), and after it only
/// ":", ")", "-" or nothing before the text. "See inclusion criteria above" is not a heading.
func heading(_ p: String) -> (Bool, String)? {
    for (word, isInclusion) in [("inclusion", true), ("exclusion", false)] {
        guard let r = p.range(of: word + " criteria", options: .caseInsensitive) else { continue }
        let prefix = p[p.startIndex..<r.lowerBound]
        guard prefix.split(separator: " ").count <= 2, !prefix.contains("."), !prefix.contains("/"),
              !prefix.contains(":") else { continue }
        var isInclusion = isInclusion
        if let last = prefix.last, last != " " && last != "(" && last != "-" { continue }
        if prefix.lowercased().hasSuffix("non-") || prefix.lowercased().hasSuffix("non ") { isInclusion.toggle() }
        var rest = p[r.upperBound...]
        guard rest.isEmpty || rest.first == ":" || rest.first == ")" || rest.first == "-" || rest.hasPrefix(" -") else { continue }
        while let c = rest.first, c == ":" || c == ")" || c == "-" || c == " " { rest = rest.dropFirst() }
        return (isInclusion, String(rest))
    }
    return nil
}

func startsWithBullet(_ t: String) -> Bool { stripBullet(t) != t }

/// Removes one leading list marker: "-", "*", "•", "1.", "1)", "(1)", "a)", "a." (single letter).
func stripBullet(_ t: String) -> String {
    let s = Array(t)
    guard let first = s.first else { return t }
    if "-*•·–".contains(first) { return String(s.dropFirst()).trimmingCharacters(in: .whitespaces) }
    var i = 0
    if first == "(" { i = 1 }
    var j = i
    while j < s.count, s[j].isNumber, j - i < 3 { j += 1 }
    if j == i, j < s.count, s[j].isLetter, s[j].isLowercase { j += 1 }   // a) or a.
    if j > i, j < s.count, s[j] == ")" || (s[j] == "." && (j + 1 == s.count || s[j + 1] == " ")) {
        if j + 1 == s.count || s[j + 1] == " " {
            return String(s[(j + 1)...]).trimmingCharacters(in: .whitespaces)
        }
    }
    return t
}

/// Splits a long paragraph at sentence ends so that each piece has at most about `maxWords` words.
func splitLong(_ p: String, maxWords: Int) -> [String] {
    let words = p.split(separator: " ")
    guard words.count > maxWords else { return [p] }
    var pieces: [String] = [], current: [Substring] = []
    for (k, w) in words.enumerated() {
        current.append(w)
        let next = k + 1 < words.count ? words[k + 1].first : nil
        let sentenceEnd = (w.hasSuffix(".") || w.hasSuffix(";")) && (next.map { $0.isUppercase || $0.isNumber } ?? false)
        if (sentenceEnd && current.count >= 8) || current.count >= maxWords {
            pieces.append(current.joined(separator: " ")); current = []
        }
    }
    if !current.isEmpty { pieces.append(current.joined(separator: " ")) }
    return pieces
}
