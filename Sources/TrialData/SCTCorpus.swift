import Support
import Foundation
import NN

/// The Successful Clinical Trials pretraining corpus (SPEC 4.2): label 1 only, de-duplicated by nctid,
/// without any excluded id, split by registration order (the latest `validationFraction` to validation).
/// What the corpus builder needs of a trial (a CSV row or a feature-store row).
public protocol TrialRecord {
    var nctid: String { get }
    /// 0, 1, or nil (a trial to predict: never a successful trial here).
    var label: Int? { get }
    var phase: String { get }
    /// "file:line"
    var source: TrialSource { get }
}

extension TrialRecord {
    /// Numeric part of the NCT id (registration order).
    public var nctNumber: Int { Int(nctid.dropFirst(3)) ?? 0 }
}

extension Trial: TrialRecord {}
extension StoredTrial: TrialRecord {}

public struct SCTCorpus<T: TrialRecord> {
    public var train: [T]
    public var validation: [T]
    public var report: [String]

    public init(trials: [T], excluded: Set<String>, validationFraction: Double) {
        // A trial labelled 1 in one file and 0 in another is not a reliable success: left out, and counted.
        var labels: [String: Set<Int>] = [:]
        for t in trials { if let label = t.label { labels[t.nctid, default: []].insert(label) } }
        let conflicting = Set(labels.filter { $0.value.count > 1 }.keys)
        var seen = Set<String>()
        var pool: [T] = []
        var perSource: [String: (read: Int, labelledSuccess: Int, successful: Int, excluded: Int, duplicate: Int, conflicting: Int)] = [:]
        for t in trials {
            let file = t.source.file
            var c = perSource[file] ?? (0, 0, 0, 0, 0, 0)
            c.read += 1
            if t.label == 1 {
                c.labelledSuccess += 1
                if excluded.contains(t.nctid) { c.excluded += 1 }
                else if conflicting.contains(t.nctid) { c.conflicting += 1 }
                else if seen.contains(t.nctid) { c.duplicate += 1 }
                else { c.successful += 1; seen.insert(t.nctid); pool.append(t) }
            }
            perSource[file] = c
        }
        pool.sort { $0.nctNumber < $1.nctNumber }
        let nValid = Int((Double(pool.count) * validationFraction).rounded())
        train = Array(pool.prefix(pool.count - nValid))
        validation = Array(pool.suffix(nValid))
        var lines = ["SCT corpus: \(pool.count) successful trials (\(train.count) train, \(validation.count) validation, split at \(validation.first?.nctid ?? "-"))"]
        for (file, c) in perSource.sorted(by: { $0.key < $1.key }) {
            // The held-out, repeated and conflicting counts are of the successful rows (the others are not candidates).
            lines.append("  \(URL(fileURLWithPath: file).lastPathComponent): \(c.read) rows, \(c.labelledSuccess) successful: \(c.successful) used, \(c.excluded) held out, \(c.duplicate) duplicates, \(c.conflicting) with conflicting labels")
        }
        var phases: [String: Int] = [:]
        for t in pool { phases[t.phase, default: 0] += 1 }
        lines.append("  phases: " + phases.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        report = lines
    }
}

/// Reads an exclusion list: one NCT id (NCT and 8 ASCII digits) per line; # starts a comment, blank lines
/// are ignored; LF, CR LF or CR line endings and a byte-order mark are accepted. A FIFO, directory or device
/// is refused before it is opened.
public func readExclusionList(_ path: String) throws -> Set<String> {
    let text = try readTextLines(path, what: "exclusion list (one NCT id per line)")
    var ids = Set<String>()
    for (n, line) in text.lines.enumerated() {
        let t = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false)[0].trimmingCharacters(in: .whitespaces)
        if t.isEmpty { continue }
        guard isNCTID(t) else {
            throw InputError(file: path, line: n + 1, "expected an NCT id (NCT and 8 ASCII digits, like NCT01234567), found \"\(t.prefix(30))\"")
        }
        ids.insert(t)
    }
    return ids
}

/// Refuses an nctid that appears twice in one CSV file (a trial would be scored, counted and written twice):
/// an InputError naming the file, the later line and the earlier one. The same id in two different files
/// is not checked here (the SCT corpus counts those). Works on CSV rows and on a feature store's rows.
public func checkUniqueNCTIDs<T: TrialRecord>(_ trials: [T]) throws {
    var first: [String: [String: Int]] = [:]    // file -> nctid -> line
    for t in trials {
        if let line = first[t.source.file]?[t.nctid] {
            throw InputError(file: t.source.file, line: t.source.line,
                             "column nctid: \(t.nctid) is already on line \(line) of this file (duplicate trial id; each trial must appear once per file)")
        }
        first[t.source.file, default: [:]][t.nctid] = t.source.line
    }
}
