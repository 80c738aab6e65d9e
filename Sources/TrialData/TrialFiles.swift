import Support
import Foundation

// Reading TOP CSV files from disk. The parsers they call (parseCSV, parseTrials) take bytes and records only,
// so that the fuzz harnesses (Tests/Fuzz/run) build them without this file.

/// The records of a CSV file (see `parseCSV`: LF, CR LF and CR line endings and a byte-order mark give the
/// same records). A FIFO, directory or device is refused before it is opened.
public func readCSV(path: String) throws -> [CSVRecord] {
    try parseCSV(data: readRegularFile(path, what: "TOP-format CSV"), name: path)
}

/// Reads TOP-format CSV files. A malformed row is an InputError naming file:line:column, or, with
/// `skipBadRows`, is skipped and listed in the report. `validateRow` runs extra checks (SMILES, ICD codes).
/// `contents`: the bytes of some of the files, already read (by path); the others are read here.
public func readTrials(paths: [String], contents: [String: Data] = [:], skipBadRows: Bool = false, labels: LabelRequirement = .required,
                       validateRow: ((Trial) throws -> Void)? = nil) throws -> ([Trial], TrialReadReport) {
    var trials: [Trial] = []
    var report = TrialReadReport()
    for path in paths {
        let data = try contents[path] ?? readRegularFile(path, what: "TOP-format CSV")
        let parsed = try parseTrials(records: try parseCSV(data: data, name: path), file: path, skipBadRows: skipBadRows, labels: labels,
                                     validateRow: validateRow, skipped: &report.skipped)
        trials += parsed
        report.rowsPerFile[path] = parsed.count
    }
    return (trials, report)
}
