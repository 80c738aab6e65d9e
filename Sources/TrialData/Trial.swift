import Support
import Foundation
import NN

/// One row of a TOP benchmark CSV.
public struct Trial: Sendable {
    public var nctid: String
    public var status: String
    public var whyStop: String
    /// 0 (failed) or 1 (succeeded); nil when the label field is empty or the file has no label column (trials to
    /// predict). Commands that learn or measure from labels refuse such trials (`requireLabels`).
    public var label: Int?
    public var phase: String
    public var diseases: [String]
    /// One inner list of ICD-10 codes per disease.
    public var icdCodes: [[String]]
    public var drugs: [String]
    public var smiles: [String]
    public var criteria: String
    /// Where it was read (the CSV path as given, and the line).
    public var source: TrialSource
}

/// The phase numbers (1-4) a trial's phase text names, in the spellings registries and papers use: "phase 1/phase 2"
/// (TOP), "Phase 2", "PHASE2", "phase ii", "PHASE1|PHASE2", "Phase I/II", "Phase 2/3", "Phase 1b", "Phase IIa",
/// "EARLY_PHASE1" (counted as phase 1, as TOP's "early phase 1"). Case-insensitive; each "phase" followed by spaces,
/// "_" or "-", then a digit 1-4 or a roman numeral I-IV (an "a" or "b" after it allowed), and more of them after "/".
/// Empty for a text without one ("N/A", "not applicable", "").
public func phaseNumbers(_ text: String) -> [Int] {
    let s = Array(text.lowercased().unicodeScalars)
    let word = Array("phase".unicodeScalars)
    func isAlnum(_ k: Int) -> Bool { k < s.count && CharacterSet.alphanumerics.contains(s[k]) }
    func matches(_ k: Int, _ token: [Unicode.Scalar]) -> Bool { k + token.count <= s.count && Array(s[k..<k + token.count]) == token }
    /// The number at k and the position after it (and after an "a"/"b" suffix), or nil.
    func number(at k: Int) -> (Int, Int)? {
        for (token, n) in [("4", 4), ("3", 3), ("2", 2), ("1", 1), ("iv", 4), ("iii", 3), ("ii", 2), ("i", 1)] {
            let t = Array(token.unicodeScalars)
            guard matches(k, t) else { continue }
            let end = k + t.count
            if !isAlnum(end) { return (n, end) }
            if ["a", "b"].contains(s[end]) && !isAlnum(end + 1) { return (n, end + 1) }
        }
        return nil
    }
    var found: [Int] = [], i = 0
    while i + word.count <= s.count {
        guard matches(i, word), i == 0 || !isAlnum(i - 1) || s[i - 1] == "_" || CharacterSet.decimalDigits.contains(s[i - 1]) else { i += 1; continue }
        var k = i + word.count
        while k < s.count, [" ", "_", "-"].contains(s[k]) { k += 1 }
        while let (n, end) = number(at: k) {
            if !found.contains(n) { found.append(n) }
            // "I/II", "2/3": more numbers after a slash (a "phase" after it is the outer loop's).
            var next = end
            while next < s.count, s[next] == " " { next += 1 }
            guard next < s.count, s[next] == "/" else { break }
            next += 1
            while next < s.count, s[next] == " " { next += 1 }
            k = next
        }
        i += word.count
    }
    return found
}

/// Where a trial was read: a CSV file and a 1-based line. Stored (feature stores, messages) as "file:line".
public struct TrialSource: Codable, Hashable, Sendable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public init(file: String, line: Int) { self.file = file; self.line = line }
    /// The same source with the file's last path component only (what a feature store keeps).
    public var basename: TrialSource { TrialSource(file: URL(fileURLWithPath: file).lastPathComponent, line: line) }
    public var description: String { "\(file):\(line)" }

    public init(from decoder: Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let colon = text.lastIndex(of: ":"), let line = Int(text[text.index(after: colon)...]) else {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "expected file:line, got \(text.prefix(80))"))
        }
        file = String(text[..<colon]); self.line = line
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(description)
    }
}

/// What reading a set of CSV files produced, with counts for the report.
public struct TrialReadReport {
    public var rowsPerFile: [String: Int] = [:]
    public var skipped: [String] = []          // "file:line:col: reason" of each skipped row
}

public let topColumns = ["nctid", "status", "why_stop", "label", "phase", "diseases", "icdcodes", "drugs", "smiless", "criteria"]

/// Whether a TOP CSV must label every trial (fine-tuning, evaluation, featurize: the default) or may leave the
/// label field empty or the column out (`optional`: trials to predict; their `label` is nil).
public enum LabelRequirement: Sendable { case required, optional }

/// The trials of one CSV file's records (the first is the header); bad rows throw or, with `skipBadRows`,
/// are appended to `skipped`.
public func parseTrials(records: [CSVRecord], file path: String, skipBadRows: Bool = false, labels: LabelRequirement = .required,
                        validateRow: ((Trial) throws -> Void)? = nil, skipped: inout [String]) throws -> [Trial] {
    guard let header = records.first else { throw InputError(file: path, "empty file (expected a header line with \(topColumns.joined(separator: ",")))") }
    var index: [String: Int] = [:]
    for (i, raw) in header.fields.enumerated() {
        let name = raw.trimmingCharacters(in: .whitespaces)
        if let first = index[name] {
            let what = name.isEmpty ? "an empty column name" : "column \"\(name.prefix(40))\""
            throw InputError(file: path, line: header.lines[i], column: header.columns[i],
                             "header has \(what) twice (fields \(first + 1) and \(i + 1)); each column must be named once")
        }
        index[name] = i
    }
    let missing = topColumns.filter { index[$0] == nil && !($0 == "label" && labels == .optional) }
    guard missing.isEmpty else {
        throw InputError(file: path, line: 1, "header lacks column(s) \(missing.joined(separator: ", ")); expected \(topColumns.joined(separator: ","))")
    }
    var trials: [Trial] = []
    for record in records.dropFirst() {
        do {
            let t = try parseTrial(record, index: index, columnCount: header.fields.count, file: path, labels: labels)
            try validateRow?(t)
            trials.append(t)
        } catch let e as InputError where skipBadRows {
            skipped.append(e.description)
        }
    }
    return trials
}

func parseTrial(_ r: CSVRecord, index: [String: Int], columnCount: Int, file: String, labels: LabelRequirement) throws -> Trial {
    guard r.fields.count == columnCount else {
        throw InputError(file: file, line: r.line, "expected \(columnCount) columns, found \(r.fields.count) (a missing column or an unquoted comma)")
    }
    func field(_ name: String) -> (String, Int, Int) {
        guard let i = index[name] else { return ("", r.line, 1) }      // only label, and only when optional
        return (r.fields[i], r.lines[i], r.columns[i])
    }
    func list(_ name: String) throws -> [String] {
        let (text, line, col) = field(name)
        do { return try parsePythonStringList(text) } catch let e as ListLiteralError {
            throw InputError(file: file, line: line, column: col, "column \(name): unparsable list literal: \(e.message) at character \(e.offset)")
        }
    }
    let (nctid, nLine, nCol) = field("nctid")
    guard isNCTID(nctid) else {
        throw InputError(file: file, line: nLine, column: nCol, "column nctid: \"\(nctid.prefix(40))\" is not an id like NCT01234567 (expected NCT and 8 ASCII digits)")
    }
    let (labelText, lLine, lCol) = field("label")
    let trimmedLabel = labelText.trimmingCharacters(in: .whitespaces)
    var label: Int?
    if !trimmedLabel.isEmpty || labels == .required {
        guard let value = Int(trimmedLabel), value == 0 || value == 1 else {
            let expected = labels == .required ? "0 or 1" : "0, 1 or empty"
            throw InputError(file: file, line: lLine, column: lCol, "column label: \"\(labelText.prefix(20))\" (expected \(expected))")
        }
        label = value
    }
    var icd: [[String]] = []
    let (_, iLine, iCol) = field("icdcodes")
    for inner in try list("icdcodes") {
        do { icd.append(try parsePythonStringList(inner).map { $0.trimmingCharacters(in: .whitespaces) }) }
        catch let e as ListLiteralError {
            throw InputError(file: file, line: iLine, column: iCol, "column icdcodes: inner list \"\(inner.prefix(40))\" is unparsable: \(e.message)")
        }
    }
    return Trial(nctid: nctid, status: field("status").0, whyStop: field("why_stop").0, label: label,
                 phase: field("phase").0.trimmingCharacters(in: .whitespaces), diseases: try list("diseases"), icdCodes: icd,
                 drugs: try list("drugs"), smiles: try list("smiless"), criteria: field("criteria").0,
                 source: TrialSource(file: file, line: r.line))
}
