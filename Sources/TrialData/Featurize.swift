import Support
import Communication
import Foundation
import NN
import TextEncoder

/// Counts of one featurization, for the report.
public struct FeaturizeReport {
    public var rows = 0
    public var rowsPerFile: [String: Int] = [:]
    public var skipped: [String] = []
    public var sentences = 0
    public var uniqueSentences = 0
    public var tokens = 0
    /// Distinct sentences whose vectors were copied from the `reuse` store instead of encoded.
    public var reused = 0
    /// Distinct ICD-10 codes the hierarchy does not hold, read as their longest known prefix (`ICD10Hierarchy.resolve`),
    /// each with that prefix and the file:line of its first row, in order of first occurrence.
    public var codesReadAsPrefix: [(code: String, prefix: String, row: String)] = []
    public var seconds = 0.0
}

/// The checksum a store keeps per sentence (`FeatureStore.sentenceChecksums`): `checksum64` of its UTF-8 text.
func sentenceChecksum(_ text: String) -> UInt64 {
    var t = text
    return t.withUTF8 { checksum64(UnsafeRawBufferPointer($0)) }
}

/// Reads and validates TOP CSVs (SMILES must tokenize; ICD codes must resolve in the hierarchy), splits
/// criteria, encodes every distinct criterion sentence once with the frozen encoder, and writes one
/// feature store. Under mpirun the sentence batches are dealt round-robin to the ranks (a fixed batching
/// that does not depend on the world size, so the store is identical for any W); rank 0 writes the file.
/// `reuse`: a store made by the same encoder (identity and max_tokens) whose vectors are copied for the sentences it
/// holds (matched by text checksum); only the others are encoded. The evaluation caches use it (a split of a file
/// already in the main store costs no encoding); `cladmop featurize` always encodes everything.
/// `labels`: `.optional` for trials to predict (their stored label is nil; consumers that need one call `requireLabels`).
public func featurize(comm: Communicator, paths: [String], output: String, makeEncoder: () throws -> BertEncoder,
                      hierarchy: ICD10Hierarchy, skipBadRows: Bool, batchTokens: Int, reuse: FeatureStore? = nil,
                      labels: LabelRequirement = .required, stall: StallPolicy = StallPolicy(stallTimeout: -1),
                      waveFloats: Int = featurizeWaveFloats, log: (String) -> Void) throws -> FeaturizeReport {
    let start = Date()
    var report = FeaturizeReport()
    let paths = try distinctSources(paths)
    try refuseOverwritingInputs(output: output, inputs: paths + [hierarchy.path] + (reuse.map { [$0.path] } ?? []))
    // Each file is read once: the store's identity records the checksum of the very bytes parsed.
    let (contents, sources) = try readSources(paths)
    // Every rank must read the same files (the same path can hold another copy on another node): the sentences to
    // encode, and so the gathered counts below, would differ. Agreed before parsing, so that a rank's other copy is
    // named as such rather than by its first bad row.
    if comm.size > 1 { try requireAgreement([("the contents of " + paths.joined(separator: ", "), paths.map { p in
        sources[URL(fileURLWithPath: p).lastPathComponent] ?? "" }.joined(separator: " "))], comm: comm, what: "data files") }
    let (trials, readReport) = try readValidatedTrials(paths: paths, contents: contents, hierarchy: hierarchy, skipBadRows: skipBadRows, labels: labels)
    // A store of no trials is refused by every command that opens it: refuse to write one.
    guard !trials.isEmpty else {
        if paths.isEmpty { throw InputError("no file to featurize: data.files is empty and no --data was given; expected at least one TOP-format CSV") }
        throw InputError(file: paths.joined(separator: ", "), "no trial rows to featurize (a header only?"
            + (readReport.skipped.isEmpty ? ")" : "; \(readReport.skipped.count) malformed row(s) skipped by data.skip_bad_rows)"))
    }
    report.rows = trials.count
    report.rowsPerFile = readReport.rowsPerFile
    report.skipped = readReport.skipped

    // Codes below the hierarchy's leaves (a newer or finer code than the tree's) keep their known ancestors: said.
    var seenCodes = Set<String>()
    for t in trials {
        for code in t.icdCodes.joined() where seenCodes.insert(code.uppercased().filter { $0 != "." }).inserted {     // E119, e11.9: one code
            guard let known = hierarchy.resolve(code) else { continue }
            if known.filter({ $0 != "." }).count < code.filter({ $0 != "." }).count {
                report.codesReadAsPrefix.append((code, known, "\(t.source.file):\(t.source.line)"))
            }
        }
    }
    if let first = report.codesReadAsPrefix.first {
        let shown = report.codesReadAsPrefix.prefix(5).map { "\($0.code) -> \($0.prefix)" }.joined(separator: ", ")
        log("featurize: \(report.codesReadAsPrefix.count) distinct ICD-10 code(s) are not in \(URL(fileURLWithPath: hierarchy.path).lastPathComponent) "
            + "and are read as their longest known prefix: \(shown)\(report.codesReadAsPrefix.count > 5 ? ", ..." : "") (the first at \(first.row))")
    }
    // Distinct sentences in order of first occurrence.
    var sentenceIndex: [String: Int] = [:]
    var texts: [String] = []
    var stored: [StoredTrial] = []
    for t in trials {
        let criteria = splitCriteria(t.criteria)
        var rows: [Int] = []
        for c in criteria {
            if let i = sentenceIndex[c.text] { rows.append(i) } else { sentenceIndex[c.text] = texts.count; rows.append(texts.count); texts.append(c.text) }
        }
        report.sentences += criteria.count
        stored.append(StoredTrial(nctid: t.nctid, label: t.label, phase: t.phase, source: t.source.basename,
                                  icd: t.icdCodes.map { $0.compactMap { hierarchy.resolve($0) } },
                                  smiles: try t.smiles.map { try tokenizeSMILES($0) },
                                  sentences: rows, inclusion: criteria.map(\.inclusion)))
    }
    report.uniqueSentences = texts.count
    let encoder = try makeEncoder()
    // Every rank must encode with the same encoder: the same encoder.model_dir can name another folder on another node
    // (or another working folder), whose vectors (of another width: a failed gather; of the same: a mixed store) differ.
    if comm.size > 1 {
        try requireAgreement([("encoder.model_dir", "\(encoder.identity), weights \(encoder.weightsChecksum)")],
                             comm: comm, what: "encoders (encoder.model_dir must name the same encoder on every node, and encoder.precision resolve alike: a node without AVX512-BF16 runs fp32)")
    }
    let checksums = texts.map(sentenceChecksum)
    // Sentences the reused store holds (its row per sentence), the rest to encode.
    var reusedRow: [Int: Int] = [:]
    if let reuse {
        var unusable: String?
        if reuse.identity.encoder != encoder.identity { unusable = "another encoder (\(reuse.identity.encoder))" }
        else if reuse.identity.encoderWeights != encoder.weightsChecksum { unusable = "another encoder's weights (or written before stores recorded them)" }
        else if reuse.identity.maxTokens != encoder.tokenizer.maxLength { unusable = "max_tokens \(reuse.identity.maxTokens), not \(encoder.tokenizer.maxLength)" }
        else if reuse.identity.featurizerVersion != FeatureStore.featurizerVersion { unusable = "another featurizer version" }
        else if reuse.dim != encoder.hidden { unusable = "width \(reuse.dim), not \(encoder.hidden)" }
        else if reuse.sentenceChecksums == nil { unusable = "it records no sentence checksums (written before they were added; featurize it again to reuse it)" }
        if let unusable {
            if comm.isRoot { log("featurize: not reusing \(reuse.path): \(unusable)") }
        } else {
            var row: [UInt64: Int] = [:]
            for (i, c) in reuse.sentenceChecksums!.enumerated() where row[c] == nil { row[c] = i }
            for (s, c) in checksums.enumerated() { if let r = row[c] { reusedRow[s] = r } }
        }
    }
    report.reused = reusedRow.count
    // Every rank must encode the same sentences (the gathered counts below assume it): a rank that could not open
    // or use the reused store would otherwise disagree.
    // And every rank must gather in the same waves (CLADMOP_FEATURIZE_WAVE_KB, read by each rank from its own
    // environment): other waves would post gathers of other sizes, an MPI error or a hang.
    var agreement = [Double(report.reused), -Double(report.reused), Double(waveFloats), -Double(waveFloats)]
    agreement.withUnsafeMutableBufferPointer { comm.allReduceMax($0.baseAddress!, count: 4) }
    guard agreement[0] == -agreement[1] else {
        throw InputError(file: reuse?.path ?? output, "the ranks disagree on which sentences this store provides (\(Int(-agreement[1]))..\(Int(agreement[0])) reused): is it the same file on every node?")
    }
    guard agreement[2] == -agreement[3] else {
        throw InputError("the ranks were started with different CLADMOP_FEATURIZE_WAVE_KB (gathers of \(Int(-agreement[3]) * 4 / 1024) to \(Int(agreement[2]) * 4 / 1024) KiB; unset means 65536): give it to every rank alike (mpirun -x CLADMOP_FEATURIZE_WAVE_KB), or leave it unset")
    }
    let toEncode = texts.indices.filter { reusedRow[$0] == nil }
    var tokens = [[Int32]](repeating: [], count: texts.count)
    for s in toEncode { tokens[s] = encoder.tokenizer.encode(texts[s]) }
    report.tokens = toEncode.reduce(0) { $0 + tokens[$1].count }
    let batches = BertEncoder.batches(lengths: toEncode.map { tokens[$0].count }, maxBatchTokens: batchTokens).map { $0.map { toEncode[$0] } }

    // The batches are encoded and gathered in waves of consecutive rounds (round k: batches kW..<(k+1)W, batch b on
    // rank b % W), each gathered wave's vectors within `waveFloats`: no rank ever holds the whole payload, and rank 0
    // writes each wave's rows into the store file as it arrives.
    let width = 3 * encoder.hidden
    let waves = featurizeWaves(batchSizes: batches.map(\.count), ranks: comm.size, rowFloats: width, waveFloats: waveFloats)
    if comm.isRoot {
        let reused = report.reused > 0 ? " (\(report.reused) reused from \(reuse!.path), \(toEncode.count) to encode)" : ""
        log("featurize: \(trials.count) rows, \(report.sentences) criterion sentences, \(texts.count) distinct\(reused), \(report.tokens) tokens, \(batches.count) batches over \(comm.size) rank(s), gathered in \(waves.count) wave(s)")
    }
    func floats(_ wave: Range<Int>, rank r: Int) -> Int { wave.filter { $0 % comm.size == r }.reduce(0) { $0 + batches[$1].count } * width }
    let localCapacity = waves.map { w in (0..<comm.size).map { floats(w, rank: $0) }.max()! }.max() ?? 0
    let gatheredCapacity = waves.map { w in (0..<comm.size).reduce(0) { $0 + floats(w, rank: $1) } }.max() ?? 0
    let local = FloatPtr.allocate(capacity: max(localCapacity, 1))
    defer { local.deallocate() }
    let gathered = FloatPtr.allocate(capacity: max(gatheredCapacity, 1))
    defer { gathered.deallocate() }
    let mineTotal = batches.indices.filter { $0 % comm.size == comm.rank }.reduce(0) { $0 + batches[$1].count }
    // A rank that stops (SIGSTOP, a frozen node) would leave the others in a gather for ever: the watchdog
    // (train.stall_timeout) ends the job naming it. A rank that finishes its wave first waits for the others: only a
    // peer that stopped answering counts.
    let watchdog = Watchdog.ofPeers(stall, comm: comm, activity: "featurizing")
    defer { watchdog.stop() }
    /// Encodes every wave; `put(s, rows)` receives (rank 0 only) the gathered vectors of sentence s: (3, dim) floats.
    func encodeAndGather(put: (Int, UnsafePointer<Float>) throws -> Void) throws {
        var done = 0, encodedBatches = 0
        let t0 = Date()
        for wave in waves {
            var row = 0
            for b in wave where b % comm.size == comm.rank {
                watchdog.beat()
                encoder.encode(indices: batches[b], tokens: tokens, into: local, rowOffset: row)
                row += batches[b].count
                done += batches[b].count
                encodedBatches += 1
                if comm.isRoot && (encodedBatches % 20 == 0 || done == mineTotal) {
                    let rate = Double(done) / Date().timeIntervalSince(t0)
                    log(String(format: "featurize: rank 0 encoded %d/%d sentences (%.0f sentences/s per rank)", done, mineTotal, rate))
                }
            }
            watchdog.beat()
            comm.allGatherV(send: local, receive: gathered, counts: (0..<comm.size).map { floats(wave, rank: $0) })
            guard comm.isRoot else { continue }
            // The gathered block of rank r lists its batches of this wave in order.
            var at = 0
            for r in 0..<comm.size {
                for b in wave where b % comm.size == r {
                    for s in batches[b] { try put(s, gathered + at * width); at += 1 }
                }
            }
        }
        // Rank 0 still checksums and renames the file while the others wait in the barrier: the job's watchdog, as
        // before any featurizing.
        watchdog.stop()
    }
    if comm.isRoot {
        let identity = StoreIdentity(encoder: encoder.identity, maxTokens: encoder.tokenizer.maxLength,
                                     featurizerVersion: FeatureStore.featurizerVersion, sources: sources, encoderWeights: encoder.weightsChecksum)
        try FeatureStore.write(path: output, identity: identity, dim: encoder.hidden, trials: stored, sourcePaths: paths,
                               skipped: report.skipped, sentenceCount: texts.count, sentenceChecksums: checksums) { put in
            for (s, r) in reusedRow { try put(s, reuse!.vectors(sentence: r), 1) }
            try encodeAndGather { s, rows in try put(s, rows, 1) }
        }
    } else {
        try encodeAndGather { _, _ in }
    }
    comm.barrier()
    report.seconds = Date().timeIntervalSince(start)
    return report
}

/// The default bound of one gathered wave of `featurize`: 64 MiB of vectors (about 14,000 sentences of MiniLM);
/// `cladmop featurize` takes another from CLADMOP_FEATURIZE_WAVE_KB (the tests' many small waves).
public let featurizeWaveFloats = 16 << 20

/// `featurize`'s waves: consecutive ranges of batch indices, each a whole number of rounds of `ranks` batches (the
/// last round may be short), holding at most `waveFloats` floats of vectors (`rowFloats` per sentence) unless a
/// single round holds more. The same for every rank.
public func featurizeWaves(batchSizes: [Int], ranks: Int, rowFloats: Int, waveFloats: Int) -> [Range<Int>] {
    var waves: [Range<Int>] = []
    var start = 0, floats = 0
    for round in stride(from: 0, to: batchSizes.count, by: ranks) {
        let end = min(round + ranks, batchSizes.count)
        let roundFloats = batchSizes[round..<end].reduce(0, +) * rowFloats
        if round > start && floats + roundFloats > waveFloats {
            waves.append(start..<round)
            start = round; floats = 0
        }
        floats += roundFloats
    }
    if start < batchSizes.count { waves.append(start..<batchSizes.count) }
    return waves
}

/// Refuses an `output` that is the same file as one of `inputs` (a featurization never overwrites what it reads).
func refuseOverwritingInputs(output: String, inputs: [String]) throws {
    var o = stat()
    guard stat(output, &o) == 0 else { return }    // not there yet
    for input in inputs {
        var st = stat()
        if stat(input, &st) == 0 && st.st_dev == o.st_dev && st.st_ino == o.st_ino {
            throw InputError(file: output, "is also an input of this featurization (\(input)); refusing to overwrite it, choose another output")
        }
    }
}

/// Reads TOP CSVs and checks what featurization needs: every SMILES tokenizes, every ICD code (or a
/// prefix of it) is in the hierarchy, and no nctid appears twice in one file. Errors name file:line; with
/// `skipBadRows` malformed rows are counted instead (a duplicate id is always an error: which copy is
/// right cannot be told).
public func readValidatedTrials(paths: [String], contents: [String: Data] = [:], hierarchy: ICD10Hierarchy, skipBadRows: Bool,
                                labels: LabelRequirement = .required) throws -> ([Trial], TrialReadReport) {
    let result = try readTrials(paths: paths, contents: contents, skipBadRows: skipBadRows, labels: labels) { t in
        for s in t.smiles {
            do { _ = try tokenizeSMILES(s) } catch let e as SMILESError {
                throw InputError(file: t.source.file, line: t.source.line, "column smiless: invalid SMILES \"\(s.prefix(60))\": \(e.message)")
            }
        }
        for code in t.icdCodes.joined() where hierarchy.resolve(code) == nil {
            throw InputError(file: t.source.file, line: t.source.line, "column icdcodes: unknown ICD-10 code \"\(code)\" (not in \(URL(fileURLWithPath: hierarchy.path).lastPathComponent), nor any prefix of it)")
        }
    }
    try checkUniqueNCTIDs(result.0)
    return result
}
