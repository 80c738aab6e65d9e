import Training
import Support
import ArgumentParser
import Communication
import Config
import TrialData
import Foundation
import NN
import TextEncoder

struct Featurize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Featurize TOP CSV files into a feature store (runs under mpirun: ranks encode disjoint shards).")

    @Option(name: .customLong("data"), help: "TOP-format CSV file (repeatable; default: config data.files).")
    var data: [String] = []

    @Option(help: "Feature store to write (default: config data.feature_store).")
    var output: String?

    @Flag(help: "Do nothing when the store exists and was built from the same files with the same encoder (and, with data.skip_bad_rows off, left no malformed row out).")
    var skipIfCurrent = false

    @OptionGroup var options: ConfigOptions

    /// The floats of one gathered wave: CLADMOP_FEATURIZE_WAVE_KB KiB when set and not empty (a whole number from 1 to
    /// 8,388,607: one gather holds under 2^31 floats), else the default (`featurizeWaveFloats`). The same store whatever
    /// the value; it bounds the memory of a gather. Every rank must have the same (`featurize` checks it).
    static func waveFloats() throws -> Int {
        guard let value = ProcessInfo.processInfo.environment["CLADMOP_FEATURIZE_WAVE_KB"], !value.isEmpty else { return featurizeWaveFloats }
        let limit = (Int(Int32.max) * MemoryLayout<Float>.stride) / 1024
        guard let kb = Int(value), (1...limit).contains(kb) else {
            throw InputError("CLADMOP_FEATURIZE_WAVE_KB=\(value.debugDescription): expected a whole number of KiB from 1 to \(limit)")
        }
        return kb * 1024 / MemoryLayout<Float>.stride
    }

    func run() throws {
        runJob { comm in
            let waveFloats = try Self.waveFloats()     // a bad value is refused also when the store is current
            let spec = try options.load(comm)
            let paths = data.isEmpty ? spec.data.files : data
            let output = output ?? spec.data.featureStore
            // --data into the configured store (no --output, or an --output that is that file under any name): it
            // is replaced by one of these files only. A store there of other files too (the project's store of the
            // bundled CSVs, which pretraining and fine-tuning read) is refused, not shrunk: hours of encoding.
            let isConfigured = self.output == nil || isSameExistingFile(output, spec.data.featureStore)
            if isConfigured, !data.isEmpty, let found = try? FeatureStore(path: output, sourcesForHint: paths) {
                let given = Set(paths.map { URL(fileURLWithPath: $0).lastPathComponent })
                let dropped = found.identity.sources.keys.filter { !given.contains($0) }.sorted()
                if !dropped.isEmpty {
                    let how = self.output == nil ? "featurize --data without --output" : "--output (data.feature_store, \(printable(spec.data.featureStore)))"
                    throw InputError(file: output, "\(how) would replace data.feature_store, a store of \(found.identity.sources.count) file(s), "
                        + "with a store of only the \(paths.count) --data file(s), dropping \(dropped.prefix(4).map(printable).joined(separator: ", "))\(dropped.count > 4 ? " and \(dropped.count - 4) more" : ""); "
                        + "give \(self.output == nil ? "" : "another ")--output for a store of these files (and set data.feature_store to it where it is read), or remove \(printable(output)) first")
                }
            }
            try checkOutputs([("--output", output)], inputs: paths.map { ("--data", $0) } + [("data.icd_hierarchy", spec.data.icdHierarchy)],
                             protectRunFiles: false, isRoot: comm.isRoot)
            try FeatureStore.refuseReplacingOtherFiles(output, option: "--output")
            let precision = resolvedPrecision(spec.encoder.precision, key: "encoder.precision", comm: comm)
            if skipIfCurrent {
                // Every rank comes here (and to the agreement below) whether or not its node shows the file.
                let exists = FileManager.default.fileExists(atPath: output)
                let expected = try spec.expectedStoreIdentity(of: paths, comm: comm)
                // Current: made from these files' bytes by this encoder, and, with data.skip_bad_rows off, without rows
                // left out. Agreed: a rank whose node holds a current copy must not return while the others rebuild.
                // What the store there is, and why it is not this one (said when it is rebuilt).
                var store: FeatureStore?, why = ""
                if exists {
                    do {
                        let found = try FeatureStore(path: output, sourcesForHint: paths)
                        let mismatches = expected.mismatches(of: found.identity)
                        if mismatches.isEmpty { store = found } else {
                            let held = found.identity.sources.count, asked = expected.sources.count
                            why = "it is a store of other inputs: \(mismatches.joined(separator: "; "))"
                                + (Set(found.identity.sources.keys) != Set(expected.sources.keys) ? "; its \(held) file(s) are replaced by \(asked)" : "")
                        }
                    } catch { why = "it cannot be read: \(error)" }
                }
                let leftOut = store.map { !$0.skippedRows(of: paths).isEmpty && !spec.data.skipBadRows } ?? false
                let current = store != nil && !leftOut
                try requireAgreement([("whether \(output) is up to date", "\(current)")], comm: comm,
                                     what: "feature stores (--output: is it the same file on every node?)")
                if current {
                    if comm.isRoot { log("featurize: \(output) is up to date") }
                    return
                }
                if comm.isRoot && exists {
                    log("featurize: rebuilding \(output) from \(paths.joined(separator: ", ")): "
                        + (leftOut ? "it is current but left malformed rows out (data.skip_bad_rows was on)" : why))
                }
            }
            let hierarchy = try ICD10Hierarchy(path: spec.data.icdHierarchy, comm: comm)
            let makeEncoder = { try BertEncoder(modelDir: spec.encoder.modelDir, maxLength: spec.encoder.maxTokens, precision: precision) }
            let report = try TrialData.featurize(comm: comm, paths: paths, output: output, makeEncoder: makeEncoder, hierarchy: hierarchy,
                                            skipBadRows: spec.data.skipBadRows, batchTokens: spec.encoder.batchTokens,
                                            stall: StallPolicy(stallTimeout: spec.train.stallTimeout), waveFloats: waveFloats,
                                            log: { if comm.isRoot { log($0) } })
            guard comm.isRoot else { return }
            for (file, n) in report.rowsPerFile.sorted(by: { $0.key < $1.key }) { log("  \(file): \(n) rows") }
            if !report.skipped.isEmpty {
                log("  skipped \(report.skipped.count) malformed row(s) (data.skip_bad_rows):")
                for s in report.skipped { log("    \(s)") }
            }
            log(String(format: "featurize: wrote %@ (%d rows, %d distinct sentences, %d tokens) in %.1f s",
                       output, report.rows, report.uniqueSentences, report.tokens, report.seconds))
        }
    }
}
