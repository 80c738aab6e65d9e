import Support
import ArgumentParser
import Communication
import Config
import TrialData
import Foundation

struct Split: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Split a TOP CSV by NCT-id order: the earliest FRACTION of the rows to --train, the rest to --valid (new files; existing ones are refused).")

    @Option(help: "TOP-format CSV.") var data: String
    @Option(parsing: .unconditional, help: "Share of rows (earliest NCT ids) for the training file.") var fraction: Double = 0.8
    @Option(help: "Output training CSV.") var train: String
    @Option(help: "Output validation CSV.") var valid: String

    func validate() throws {
        guard fraction > 0 && fraction < 1 else { throw ValidationError("--fraction must be in (0, 1)") }
    }

    func run() throws {
        runJob { comm in
            try checkOutputs([("--train", train), ("--valid", valid)], inputs: [("--data", data)], isRoot: comm.isRoot)
            guard comm.isRoot else { return }     // under mpirun: one split, by rank 0
            // A split is an input of later runs: never replace one.
            var st = stat()
            for (option, path) in [("--train", train), ("--valid", valid)] where lstat(path, &st) == 0 {     // a dangling link too
                let what = (st.st_mode & S_IFMT) == S_IFLNK && stat(path, &st) != 0 ? "a symbolic link to nothing" : "an existing file"
                throw InputError(file: path, "\(option) names \(what); remove it or choose another path")
            }
            let records = try readCSV(path: data)
            // Every row is checked as the commands that read the halves will check it (columns, NCT id, label 0/1 or
            // empty, list literals; each id once), so a split never passes on a row they would refuse.
            var skipped: [String] = []
            let trials = try parseTrials(records: records, file: data, labels: .optional, skipped: &skipped)   // one per row
            try checkUniqueNCTIDs(trials)
            let header = records[0]      // parseTrials refuses a file without one
            let rows = zip(records.dropFirst(), trials).sorted { $0.1.nctid < $1.1.nctid }.map(\.0)
            let cut = Int((Double(rows.count) * fraction).rounded())
            func csv(_ r: [CSVRecord]) -> Data {
                let lines = ([header] + r).map { $0.fields.map(csvQuote).joined(separator: ",") }
                return Data((lines.joined(separator: "\n") + "\n").utf8)
            }
            guard cut > 0 && cut < rows.count else {
                throw InputError(file: data, "\(rows.count) row(s): --fraction \(fraction) leaves \(cut == 0 ? "--train" : "--valid") without rows")
            }
            // Both files or neither (also on a signal), never replacing one that another command wrote meanwhile.
            try writeNewFilesTogether([(train, csv(Array(rows.prefix(cut)))), (valid, csv(Array(rows.dropFirst(cut))))])
            log("split: \(cut) rows -> \(train), \(rows.count - cut) rows -> \(valid)")
        }
    }
}

/// RFC 4180 quoting when a field needs it.
func csvQuote(_ f: String) -> String {
    f.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) ? "\"" + f.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : f
}

