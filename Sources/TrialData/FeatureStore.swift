import Support
import Foundation
import NN
import CSystem

/// One featurized CSV row.
public struct StoredTrial: Codable, Sendable {
    public var nctid: String
    /// 0 or 1; nil for a trial to predict (`Trial.label`).
    public var label: Int?
    public var phase: String
    /// Source CSV file name (last path component) and line.
    public var source: TrialSource
    /// ICD-10 codes, one inner list per disease, each resolved to a node of the hierarchy.
    public var icd: [[String]]
    /// SMILES tokens, one list per drug.
    public var smiles: [[String]]
    /// Rows of the sentence table, in criteria order, and their inclusion (true) / exclusion tags.
    public var sentences: [Int]
    public var inclusion: [Bool]
}

/// The 0/1 labels of `trials`, all of `file`, for a command that learns or measures from them (`purpose`, e.g.
/// "evaluate"). A trial stored without one (featurized for predict from a CSV whose label was empty or absent) is
/// an input error naming `file` and its line.
public func requireLabels(_ trials: [StoredTrial], file: String, purpose: String) throws -> [Int] {
    try trials.map { t in
        guard let label = t.label else {
            throw InputError(file: file, line: t.source.line, "trial \(t.nctid) has no label (the field is empty or the file has no label column); \(purpose) needs 0 or 1")
        }
        return label
    }
}

/// What a store was built from: consumers compare it with what they would build now.
public struct StoreIdentity: Codable, Equatable, Sendable {
    public var encoder: String
    public var maxTokens: Int
    public var featurizerVersion: Int
    /// file name (last path component) -> checksum of its bytes. The name is only a key: a store never holds
    /// two files of one name (`distinctSources`), and a file matches a store's entry only with the same bytes.
    public var sources: [String: String]
    /// `BertEncoder.weightsChecksum` of the encoder that made it (`encoder` covers the safetensors header only); nil
    /// for a synthetic store, and for stores written before 2026-12-04, which no current encoder matches.
    public var encoderWeights: String? = nil

    /// Why a store of identity `stored` is not the one these files and this encoder make (`self`), each reason a phrase;
    /// empty when it is.
    public func mismatches(of stored: StoreIdentity) -> [String] {
        var why: [String] = []
        if encoder != stored.encoder { why.append("encoder \(stored.encoder) != \(encoder)") }
        if maxTokens != stored.maxTokens { why.append("max_tokens \(stored.maxTokens) != \(maxTokens)") }
        if featurizerVersion != stored.featurizerVersion { why.append("featurizer version changed") }
        if encoder == stored.encoder && encoderWeights != stored.encoderWeights {
            why.append(stored.encoderWeights == nil ? "made before stores recorded the encoder's weights (cladmop before 2026-12-04)"
                       : "the encoder's weights (model.safetensors) differ from those it was made with")
        }
        for (name, sum) in sources.sorted(by: { $0.key < $1.key }) where stored.sources[name] != sum {
            why.append(stored.sources[name] == nil ? "\(name) not in the store" : "\(name) changed since featurization")
        }
        for name in stored.sources.keys.sorted() where sources[name] == nil {
            why.append("the store also holds \(name), not asked for")
        }
        return why
    }
}

struct StoreMeta: Codable {
    var identity: StoreIdentity
    var dim: Int
    var levels: [String]
    var sentenceCount: Int
    var trials: [StoredTrial]
    var sourcePaths: [String]
    var skipped: [String]
    /// `checksum64` of each sentence's UTF-8 text, in payload order (stores written before this field: nil). Lets
    /// a later featurization reuse this store's vectors for sentences it shares (`featurize(reuse:)`).
    var sentenceChecksums: [UInt64]?
}

/// Versioned, memory-mapped feature store (SPEC 4.5).
///
/// Layout: "CLADMOPF" | u32 version | u32 levels | u64 dim | u64 sentences | u64 meta bytes | u64 payload offset
/// | u64 checksum (of meta and payload) | meta JSON | zero padding to 64 bytes | Float32 payload
/// (sentences, levels, dim): the coarse, medium, fine vectors of every unique criterion sentence.
public final class FeatureStore {
    public static let version: UInt32 = 1
    public static let featurizerVersion = 1
    static let magic = Array("CLADMOPF".utf8)
    /// What `FilesRead` records a store opened here as.
    static let readAs = "feature store"
    static let headerBytes = 8 + 4 + 4 + 8 * 5

    /// Refuses an output (`option`) that would replace an existing file which is not a feature store: a non-empty one
    /// that neither starts with the store's magic nor is named `*.store` (a store damaged past its magic is still
    /// rebuilt over).
    /// featurize and synth only ever replace stores; a run's best.json, a checkpoint or a CSV named by mistake stays.
    /// A symbolic link is judged by the file it leads to (a store is written through it): a link named `*.store` to
    /// a checkpoint or a CSV had had its target replaced. (So a linked store damaged past its magic, whose target is
    /// not named `*.store`, is refused too: remove it to rebuild.)
    public static func refuseReplacingOtherFiles(_ path: String, option: String) throws {
        var st = stat()
        let target = resolvedPath(path)
        // An empty file (mktemp's) holds nothing to lose.
        guard stat(target, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_size > 0, !target.hasSuffix(".store") else { return }
        guard !startsWithMagic(target) else { return }
        let what = runFileKind(target) ?? "no CLADMOPF header, name not *.store"
        var link = stat()
        let names = lstat(path, &link) == 0 && (link.st_mode & S_IFMT) == S_IFLNK ? "a symbolic link to \(target), an existing file," : "an existing file"
        throw InputError(file: path, "\(option) names \(names) that is not a feature store (\(what)); a store only replaces a store: choose another path")
    }

    /// Whether `path` is a regular file that begins with the store's magic (`CLADMOPF`): what `cladmop featurize` and
    /// `cladmop synth` write, whatever its name (a damaged store among them: opening it says what is wrong).
    public static func startsWithMagic(_ path: String) -> Bool {
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return false }
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var head = [UInt8](repeating: 0, count: magic.count)
        return pread(fd, &head, head.count, 0) == head.count && head == magic
    }

    /// The identity of the store at `path` from its header and metadata only (not its vectors, nor their checksum:
    /// a store of gigabytes need not be read to know what made it); nil when it is no readable store.
    public static func identity(at path: String) -> StoreIdentity? {
        var st = stat()
        guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var header = [UInt8](repeating: 0, count: headerBytes)
        guard pread(fd, &header, headerBytes, 0) == headerBytes, Array(header[0..<8]) == magic else { return nil }
        let metaBytes = header.withUnsafeBytes { Int(truncatingIfNeeded: $0.loadUnaligned(fromByteOffset: 32, as: UInt64.self)) }
        guard metaBytes > 0, metaBytes <= 1 << 30, headerBytes + metaBytes <= Int(st.st_size) else { return nil }
        var meta = [UInt8](repeating: 0, count: metaBytes)
        guard pread(fd, &meta, metaBytes, off_t(headerBytes)) == metaBytes else { return nil }
        struct Identified: Decodable { var identity: StoreIdentity }
        return try? JSONDecoder().decode(Identified.self, from: Data(meta)).identity
    }

    public let path: String
    public let identity: StoreIdentity
    public let dim: Int
    public let levelCount = 3
    public let sentenceCount: Int
    public let trials: [StoredTrial]
    public let sourcePaths: [String]
    public let skipped: [String]
    /// The header's checksum of the metadata and vectors: two stores with the same one hold the same trials and vectors.
    public let checksum: UInt64
    /// `checksum64` of the metadata alone (its trials, with their codes, molecules and sentence rows; the source paths):
    /// two synthetic stores of the same seed, size and noise drawn from other ICD trees differ here.
    public let metadataChecksum: UInt64

    /// data.skip_bad_rows: the malformed rows of `files` (matched by file name, as the store keys its sources) this
    /// store left out when it was featurized, each `PATH:LINE:COLUMN: what`.
    public func skippedRows(of files: [String]) -> [String] {
        let names = Set(files.map { URL(fileURLWithPath: $0).lastPathComponent })
        let paths = sourcePaths.filter { names.contains(URL(fileURLWithPath: $0).lastPathComponent) }
        return skipped.filter { entry in paths.contains { entry.hasPrefix($0 + ":") } }
    }

    /// Refuses the store when it left rows of `files` out and the key is off (they would be missing without a word);
    /// with the key on, returns the lines that name them (once per store and process: an ensemble reads it per member).
    public func requireSkippedRowsAllowed(of files: [String], skipBadRows: Bool) throws -> [String] {
        let rows = skippedRows(of: files)
        guard let first = rows.first else { return [] }
        let culprits = files.filter { !skippedRows(of: [$0]).isEmpty }.joined(separator: ", ")      // not the clean ones
        guard skipBadRows else {
            throw InputError("\(first) (\(path) was featurized with data.skip_bad_rows = true and left out \(rows.count) malformed row(s) of "
                             + "\(culprits); mend the file and featurize it again, or set data.skip_bad_rows=true to read it without them)")
        }
        let key = path + "|" + files.joined(separator: "|")
        guard FeatureStore.announced.withLock({ $0.insert(key).inserted }) else { return [] }
        return ["\(rows.count) malformed row(s) of \(culprits) skipped (data.skip_bad_rows), not read from \(path):"]
            + rows.prefix(20).map { "    " + $0 } + (rows.count > 20 ? ["    ... and \(rows.count - 20) more (the store lists them all)"] : [])
    }
    private static let announced = Locked(Set<String>())
    /// `checksum64` of each sentence's text, in payload order, or nil for a store written without them.
    public let sentenceChecksums: [UInt64]?
    private let file: MappedFile
    private let payload: UnsafePointer<Float>

    /// The rows read from `csv` (matched by its file name, as the store keeps it), in store order.
    public func trials(of csv: String) -> [StoredTrial] {
        let name = URL(fileURLWithPath: csv).lastPathComponent
        return trials.filter { $0.source.file == name }
    }

    /// The rebuild command named in every refusal.
    public static func rebuildHint(_ path: String, sources: [String]) -> String {
        "rebuild it with: cladmop featurize " + sources.map { "--data \($0)" }.joined(separator: " ") + " --output \(path)"
    }

    /// Opens and verifies a store: magic, version, sizes, checksum; then, when `expected` is given,
    /// that it was built by the same encoder and featurizer from the same file contents. A refusal names the
    /// command that rebuilds it: `cladmop synth` for a `synthetic` store, else featurize of `sourcesForHint`.
    public init(path: String, expected: StoreIdentity? = nil, sourcesForHint: [String] = [], synthetic: Bool = false) throws {
        self.path = path
        let hint = synthetic ? "rebuild it with: cladmop synth --output \(path) and the --trials, --dim, --seed and --noise it was made with (a resumed run needs the same store)"
            : Self.rebuildHint(path, sources: sourcesForHint.isEmpty ? ["FILE.csv"] : sourcesForHint)
        guard FileManager.default.fileExists(atPath: path) else {
            throw InputError(file: path, "feature store not found; \(hint)")
        }
        try requireRegularFile(path, what: "feature store")   // before MappedFile opens it: a FIFO would block
        // A write of this store killed by SIGKILL left its temporary (the store's size); a rerun within the minute that
        // `removeStaleTemporaries` waits wrote the store, and nothing wrote it again (a probe: it stayed for good).
        // Every reader removes one, on a writer's conditions but an hour old, not a minute: readers run on every node,
        // where a file system's flock may be local to the node, and a featurize can write its store's temporary
        // minutes apart (one wave of sentences at a time). Beside the store a link leads to, where it is written.
        removeStaleTemporaries(of: temporaryPath(for: resolvedPath(path)), olderThan: 3600)
        file = try MappedFile(path: path, readAs: Self.readAs)
        let b = file.bytes
        func refuse(_ m: String) -> InputError { InputError(file: path, "\(m); \(hint)") }
        guard b.count >= 8, Array(b[0..<8]) == Self.magic else { throw refuse("not a cladmop feature store (bad magic)") }
        guard b.count >= Self.headerBytes else { throw refuse("truncated feature store (\(b.count) bytes, shorter than its \(Self.headerBytes)-byte header)") }
        let version = b.loadUnaligned(fromByteOffset: 8, as: UInt32.self)
        guard version == Self.version else { throw refuse("feature store version \(version), this cladmop reads version \(Self.version)") }
        let levels = Int(b.loadUnaligned(fromByteOffset: 12, as: UInt32.self))
        // Sizes of 2^63 or more read as negative (truncating, never trapping) and are refused with the rest below.
        func size(at offset: Int) -> Int { Int(truncatingIfNeeded: b.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) }
        let dim = size(at: 16), sentences = size(at: 24), metaBytes = size(at: 32), payloadOffset = size(at: 40)
        let checksum = b.loadUnaligned(fromByteOffset: 48, as: UInt64.self)
        guard levels == 3, dim > 0, dim < 1 << 16, sentences >= 0, sentences < 1 << 32, metaBytes >= 0, metaBytes < 1 << 34,
              payloadOffset >= Self.headerBytes + metaBytes, payloadOffset <= b.count, payloadOffset % 64 == 0,
              b.count == payloadOffset + sentences * levels * dim * 4 else {
            throw refuse("truncated or corrupt feature store (header sizes do not match the file's \(b.count) bytes)")
        }
        let meta = UnsafeRawBufferPointer(rebasing: b[Self.headerBytes..<(Self.headerBytes + metaBytes)])
        let data = UnsafeRawBufferPointer(rebasing: b[payloadOffset...])
        let metaChecksum = checksum64(meta)
        guard checksum64(data, seed: metaChecksum) == checksum else { throw refuse("corrupt feature store (checksum mismatch)") }
        let decoded: StoreMeta
        if let key = duplicateJSONKey(Data(meta)) { throw refuse("corrupt feature store metadata (key \(key) appears twice in one object)") }
        do { decoded = try JSONDecoder().decode(StoreMeta.self, from: Data(meta)) }
        catch { throw refuse("corrupt feature store metadata") }
        guard decoded.sentenceCount == sentences, decoded.dim == dim,
              decoded.trials.allSatisfy({ $0.sentences.allSatisfy { $0 >= 0 && $0 < sentences } && $0.sentences.count == $0.inclusion.count }),
              decoded.sentenceChecksums.map({ $0.count == sentences }) ?? true else {
            throw refuse("corrupt feature store (metadata disagrees with the payload)")
        }
        if let expected, expected != decoded.identity {
            let why = expected.mismatches(of: decoded.identity)
            // A store of other files (the bundled one, say) is better kept: the rebuild would replace it.
            let otherFiles = Set(decoded.identity.sources.keys) != Set(expected.sources.keys)
            throw InputError(file: path, "stale feature store (\(why.joined(separator: "; "))); \(hint)"
                             + (otherFiles ? " (it would replace this store's \(decoded.identity.sources.count) file(s); to keep it, featurize into another --output and set data.feature_store to that store)" : ""))
        }
        identity = decoded.identity
        self.dim = dim
        sentenceCount = sentences
        trials = decoded.trials
        sourcePaths = decoded.sourcePaths
        skipped = decoded.skipped
        sentenceChecksums = decoded.sentenceChecksums
        self.checksum = checksum
        metadataChecksum = metaChecksum
        payload = data.baseAddress!.assumingMemoryBound(to: Float.self)
    }

    /// The vector of sentence `s` at level `level` (0 coarse, 1 medium, 2 fine): (dim) floats.
    @inline(__always) public func vector(sentence s: Int, level: Int) -> UnsafePointer<Float> {
        payload + (s * levelCount + level) * dim
    }

    /// The three levels of sentence `s`, back to back: (3, dim) floats.
    @inline(__always) public func vectors(sentence s: Int) -> UnsafePointer<Float> { payload + s * levelCount * dim }

    /// Writes a store atomically (temporary file, fsync, rename) from `vectors`: (sentenceCount, 3, dim) floats.
    static func write(path: String, identity: StoreIdentity, dim: Int, trials: [StoredTrial], sourcePaths: [String],
                      skipped: [String], vectors: UnsafePointer<Float>, sentenceCount: Int, sentenceChecksums: [UInt64]? = nil) throws {
        let payload = UnsafeRawBufferPointer(start: vectors, count: sentenceCount * 3 * dim * MemoryLayout<Float>.stride)
        try write(path: path, identity: identity, dim: dim, trials: trials, sourcePaths: sourcePaths, skipped: skipped,
                  sentenceCount: sentenceCount, sentenceChecksums: sentenceChecksums,
                  payloadChecksum: { checksum64(payload, seed: $0) }) { put in try put(0, vectors, sentenceCount) }
    }

    /// Writes a store atomically (temporary file, fsync, rename) whose payload `fill` provides piece by piece: it calls
    /// `put(s, rows, n)` to store the vectors of sentences s..<s+n from `rows` ((n, 3, dim) floats), in any order, each
    /// sentence once. The payload goes straight to the file, whose space is reserved before `fill` starts where the
    /// file system can reserve (a store that cannot fit is refused before any encoding); its checksum is computed by
    /// reading it back, unless `payloadChecksum` gives it (`checksum64` of the payload seeded with its argument). No
    /// copy of the whole payload is held in memory (`featurize` of a large corpus had held it up to three times).
    static func write(path: String, identity: StoreIdentity, dim: Int, trials: [StoredTrial], sourcePaths: [String],
                      skipped: [String], sentenceCount: Int, sentenceChecksums: [UInt64]? = nil,
                      payloadChecksum: ((UInt64) -> UInt64)? = nil,
                      fill: (_ put: (Int, UnsafePointer<Float>, Int) throws -> Void) throws -> Void) throws {
        let meta = try encodeJSON(StoreMeta(identity: identity, dim: dim, levels: ["coarse", "medium", "fine"],
                                                      sentenceCount: sentenceCount, trials: trials, sourcePaths: sourcePaths, skipped: skipped,
                                                      sentenceChecksums: sentenceChecksums))
        let payloadOffset = (headerBytes + meta.count + 63) / 64 * 64
        let rowBytes = 3 * dim * MemoryLayout<Float>.stride
        let payloadBytes = sentenceCount * rowBytes
        var header = Data(magic)
        func append<T>(_ v: T) { withUnsafeBytes(of: v) { header.append(contentsOf: $0) } }
        // The checksum (the last field) is written once the payload is complete.
        append(version); append(UInt32(3)); append(UInt64(dim)); append(UInt64(sentenceCount))
        append(UInt64(meta.count)); append(UInt64(payloadOffset)); append(UInt64(0))
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        try makeDirectory(dir, option: "the feature store's folder")
        // A store rebuilt replaces the stale or damaged store it opened; a file this process read as anything else stays.
        try writeFileAtomically(path, replacingFileReadAs: FeatureStore.readAs) { h in
            let fd = h.fileDescriptor
            func failure(_ what: String, _ code: Int32) -> InputError {
                InputError(file: path, "cannot \(what) the feature store's temporary file: \(String(cString: strerror(code)))")
            }
            /// pwrite / pread of all `count` bytes at `offset` (a 0 return, which sets no errno, as EIO).
            func transfer(_ what: String, count: Int, offset: Int, _ io: (Int, Int) -> Int) throws {
                var done = 0
                while done < count {
                    let k = io(done, offset + done)
                    if k < 0 && errno == EINTR { continue }
                    guard k > 0 else { throw failure(what, k == 0 ? EIO : errno) }
                    done += k
                }
            }
            try h.write(contentsOf: header)
            try h.write(contentsOf: meta)
            try h.write(contentsOf: Data(count: payloadOffset - headerBytes - meta.count))
            if payloadBytes > 0 {
                let total = payloadOffset + payloadBytes
                switch cs_reserve(fd, Int64(payloadOffset), Int64(payloadBytes)) {
                case 0: break
                case ENOSPC, EDQUOT:
                    throw InputError(file: path, "not enough space for the feature store (\(String(cString: strerror(ENOSPC))) or over the disk quota): it needs \(total) bytes (\(sentenceCount) sentences of 3 x \(dim) floats, and metadata); free space there, or write the store to another folder")
                case EFBIG:
                    throw InputError(file: path, "the feature store (\(total) bytes) is larger than this file system allows for one file; write it to another file system")
                case EOPNOTSUPP, ENOSYS, EINVAL:
                    // A file system that cannot reserve space: only the size is set (a full disk shows at a write).
                    guard ftruncate(fd, off_t(total)) == 0 else { throw failure("size", errno) }
                case let code:
                    throw failure("reserve \(total) bytes for", code)
                }
            }
            var written = [Bool](repeating: false, count: sentenceCount)
            try fill { first, rows, n in
                precondition(first >= 0 && n >= 0 && first + n <= sentenceCount, "feature store rows \(first)..<\(first + n) of \(sentenceCount)")
                for s in first..<(first + n) {
                    precondition(!written[s], "feature store row \(s) written twice")
                    written[s] = true
                }
                let bytes = UnsafeRawPointer(rows)
                try transfer("write", count: n * rowBytes, offset: payloadOffset + first * rowBytes) { done, at in pwrite(fd, bytes + done, n * rowBytes - done, off_t(at)) }
            }
            if let missing = written.firstIndex(of: false) { preconditionFailure("feature store row \(missing) of \(sentenceCount) never written") }
            var sum = meta.withUnsafeBytes { checksum64($0) }
            if let payloadChecksum { sum = payloadChecksum(sum) } else {
                // The payload as written, read back in pieces of a multiple of 8 bytes: checksum64 over consecutive
                // pieces equals checksum64 over the whole.
                let piece = 8 << 20
                let buffer = UnsafeMutableRawPointer.allocate(byteCount: piece, alignment: 64)
                defer { buffer.deallocate() }
                for offset in stride(from: 0, to: payloadBytes, by: piece) {
                    let want = min(piece, payloadBytes - offset)
                    try transfer("read back", count: want, offset: payloadOffset + offset) { done, at in pread(fd, buffer + done, want - done, off_t(at)) }
                    sum = checksum64(UnsafeRawBufferPointer(start: buffer, count: want), seed: sum)
                }
            }
            try withUnsafeBytes(of: sum) { b in
                try transfer("write the checksum of", count: 8, offset: headerBytes - 8) { done, at in pwrite(fd, b.baseAddress! + done, 8 - done, off_t(at)) }
            }
        }
    }
}

/// The identity a store built now from `paths` with this encoder would have: each source keyed by its file
/// name, with the checksum of its bytes. The same file given twice counts once; two different files of one
/// name are refused (see `distinctSources`).
public func currentStoreIdentity(paths: [String], encoderIdentity: String, encoderWeights: String?, maxTokens: Int) throws -> StoreIdentity {
    StoreIdentity(encoder: encoderIdentity, maxTokens: maxTokens, featurizerVersion: FeatureStore.featurizerVersion,
                  sources: try sourceChecksums(paths), encoderWeights: encoderWeights)
}

/// A store's `StoreIdentity.sources`: the `checksum64` of each distinct source file's bytes (hexadecimal), keyed by
/// its file name.
public func sourceChecksums(_ paths: [String]) throws -> [String: String] {
    try readSources(paths).checksums
}

/// The bytes of each distinct source file (by path) and their `sourceChecksums`, from one reading: a store records
/// the checksum of the very bytes it parsed.
public func readSources(_ paths: [String]) throws -> (contents: [String: Data], checksums: [String: String]) {
    var contents: [String: Data] = [:], checksums: [String: String] = [:]
    for p in try distinctSources(paths) {
        let d = try readRegularFile(p, what: "TOP-format CSV")
        contents[p] = d
        checksums[URL(fileURLWithPath: p).lastPathComponent] = checksumHex(d)
    }
    return (contents, checksums)
}

/// The source files of one feature store, in order: a file given twice (the same path, or paths that resolve
/// to the same file) counts once; two different files with the same name (a/x.csv and b/x.csv) are refused,
/// because a store keys its sources, and matches its rows to files (`trials(of:)`), by file name.
public func distinctSources(_ paths: [String]) throws -> [String] {
    var seen: [String: (path: String, resolved: String)] = [:]
    var out: [String] = []
    for p in paths {
        let url = URL(fileURLWithPath: p)
        let resolved = url.standardizedFileURL.resolvingSymlinksInPath().path
        if let previous = seen[url.lastPathComponent] {
            if previous.resolved == resolved { continue }
            throw InputError(file: p, "has the same file name as \(previous.path); one feature store cannot hold two files of one name (its rows are matched to source files by name): rename one of them")
        }
        seen[url.lastPathComponent] = (p, resolved)
        out.append(p)
    }
    return out
}
