import Foundation

/// `text` written to `path` atomically (temporary file, fsync, rename); errors name the path and the reason.
public func writeTextFile(_ path: String, replacingInput: Bool = false, _ text: String) throws {
    try writeFileAtomically(path, replacingInput: replacingInput) { try $0.write(contentsOf: Data(text.utf8)) }
}

/// Refuses a path with a name (a component) over the 255 bytes file systems allow, naming `option`.
public func checkNameLengths(_ path: String, option: String) throws {
    if let long = path.split(separator: "/").first(where: { $0.utf8.count > 255 }) {
        throw InputError(file: path, "\(option): the name \(long.prefix(24))... is \(long.utf8.count) bytes long; file systems allow 255")
    }
}

/// Creates the folder `path` (and its parents) unless it exists; a file, FIFO or device there is an error
/// naming `option` (the flag that named it) and the path. Errors name the path and the system's reason.
public func makeDirectory(_ path: String, option: String) throws {
    try WrittenFolders.check(writing: path)
    var st = stat()
    if stat(path, &st) == 0 {
        guard (st.st_mode & S_IFMT) == S_IFDIR else { throw InputError(file: path, "\(option) names an existing file, not a folder") }
        return
    }
    let statError = errno
    let trimmed = String(path.reversed().drop { $0 == "/" }.reversed())     // "afile/": ENOTDIR, but it is the file itself
    if trimmed != path, !trimmed.isEmpty, stat(trimmed, &st) == 0, (st.st_mode & S_IFMT) != S_IFDIR {
        throw InputError(file: path, "\(option) names an existing file, not a folder")
    }
    // A symbolic link whose target is missing (or a loop): stat fails, and creating the folder would say "exists".
    var lst = stat()
    if lstat(path, &lst) == 0 && (lst.st_mode & S_IFMT) == S_IFLNK {
        let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: path)) ?? "?"
        throw InputError(file: path, "\(option) is a symbolic link to \(target), which \(statError == ELOOP ? "loops back on itself" : "does not exist"); link it to a folder, or name another")
    }
    // A folder above it that is a file (afile/sub) or a looping link (loop1/sub): named, not Foundation's "exists".
    if statError == ENOTDIR || statError == ELOOP {
        throw InputError(file: path, "cannot create the folder (\(option)): \(String(cString: strerror(statError))) (a folder on its path is "
                         + (statError == ELOOP ? "a symbolic link that loops back on itself)" : "a file)"))
    }
    try checkNameLengths(path, option: option)
    // mkdir(2) for each missing folder from the top down, so that the error is the system's (Foundation's says
    // "You don't have permission. (NSCocoaErrorDomain 513)" for EACCES and EPERM alike).
    let parts = path.split(separator: "/", omittingEmptySubsequences: true)
    guard !parts.isEmpty else { throw InputError(file: option, "is empty; expected a folder path") }
    var made = path.hasPrefix("/") ? "" : "."
    for (i, part) in parts.enumerated() {
        made += "/" + part
        guard mkdir(made, 0o777) != 0 else { continue }
        let e = errno
        // A folder that is there (another rank made it, or a file system that answers EACCES or EROFS for one that
        // exists, as an NFS or autofs mount can): go on, as `mkdir -p` does.
        if stat(made, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR { continue }
        throw InputError(file: path, "cannot create the folder (\(option)): \(String(cString: strerror(e)))"
                         + (i < parts.count - 1 ? " (creating \(made.hasPrefix("./") ? String(made.dropFirst(2)) : made))" : ""))
    }
}

/// Refuses, before any work, a folder that cannot be written into: `path` itself when it exists, else the nearest
/// existing folder above it, where it would be created (a read-only file system, no permission, or a file there).
/// `option` names the flag in the message.
public func checkWritableFolder(_ path: String, option: String) throws {
    guard !path.isEmpty else { throw InputError(file: option, "is empty; expected a folder path") }
    var existing = URL(fileURLWithPath: path).standardizedFileURL
    var st = stat()
    while stat(existing.path, &st) != 0 && existing.path != "/" {
        let code = errno
        guard code == ENOENT else { throw InputError(file: path, "\(option): \(existing.path) cannot be reached: \(String(cString: strerror(code)))") }
        existing = existing.deletingLastPathComponent()
    }
    guard (st.st_mode & S_IFMT) == S_IFDIR else { throw InputError(file: path, "\(option): \(existing.path) is not a folder") }
    guard access(existing.path, W_OK) == 0 else {
        let reason = String(cString: strerror(errno))
        let what = existing.path == URL(fileURLWithPath: path).standardizedFileURL.path ? "write in" : "create \(path) in"
        throw InputError(file: path, "\(option): cannot \(what) the folder \(existing.path): \(reason)")
    }
}

/// Refuses outputs that would replace an input (the same file after resolving links and relative paths) or
/// another output, and outputs that name an existing folder, FIFO or device. Each pair is (option, path).
/// With `protectRunFiles`, an output may not replace a file that training writes (`runFileKind`: checkpoints, a
/// run's best.json, folds.csv, config.yaml, metrics.jsonl, feature stores); featurize and synth, which write
/// stores, pass false.
public func checkOutputs(_ outputs: [(String, String)], inputs: [(String, String)], protectRunFiles: Bool = true, isRoot: Bool) throws {
    var seen: [String: String] = [:]
    for (option, path) in inputs { seen[resolvedPath(path)] = option }
    for (option, path) in outputs {
        guard !path.isEmpty else { throw InputError(file: option, "is empty; expected a file path") }
        try checkNameLengths(path, option: option)
        guard !path.hasSuffix("/") else { throw InputError(file: path, "\(option) ends with '/', a folder; expected a file path") }
        let key = resolvedPath(path)
        if let other = seen[key] {
            throw InputError(file: path, "\(option) would overwrite the file given to \(other); choose another output path")
        }
        seen[key] = option
        // A looping link, before any work (writeFileAtomically refuses it too, but only once the results exist).
        if isLoopingLink(path) {
            throw InputError(file: path, "\(option) is a symbolic link that loops back on itself (\(String(cString: strerror(ELOOP)))); choose another output path")
        }
        var st = stat()
        if stat(path, &st) == 0 && (st.st_mode & S_IFMT) != S_IFREG {
            throw InputError(file: path, "\(option) names \((st.st_mode & S_IFMT) == S_IFDIR ? "a folder" : "a file that is not a regular file"); expected a file path")
        }
        if protectRunFiles, stat(path, &st) == 0, let what = runFileKind(path) {
            throw InputError(file: path, "\(option) would overwrite \(what); choose another output path (or move that file away first)")
        }
        // The folder it goes in, before any work (the write would fail only at the end). Rank 0 writes outputs, and
        // other nodes need not share its file system: the other ranks do not check.
        let parent = URL(fileURLWithPath: path).deletingLastPathComponent().path
        // featurize and synth (protectRunFiles false) create a store's folder; the others need it to exist.
        if isRoot {
            if protectRunFiles && stat(parent, &st) != 0 && errno == ENOENT {
                throw InputError(file: path, "\(option): the folder \(parent) does not exist; create it or choose another output path")
            }
            try checkWritableFolder(parent, option: option)
        }
    }
}

/// The names training and evaluation give to what they write into a run folder (docs/checkpoints.md), once.
public enum RunLayout {
    /// Files and folders whose presence means a run was written in a folder.
    public static let artifacts = ["config.yaml", "metrics.jsonl", "checkpoints", "best.json", "report.md", "loss.svg", "retrieval.svg",
                                   "finetune.svg", "eval.json", "roc.svg", "pr.svg", "loss.png", "retrieval.png", "finetune.png", "roc.png",
                                   "pr.png", "members", "folds.csv"]
    /// An evaluation's curves (`evaluate --plots`), with their PNG copies.
    public static let curves = ["roc.svg", "pr.svg", "roc.png", "pr.png"]
    /// A run's results: its report, evaluation and plots (with their PNG copies).
    public static let results = artifacts.filter { $0.hasSuffix(".md") || $0.hasSuffix(".json") || $0.hasSuffix(".svg") || $0.hasSuffix(".png") }
        .filter { $0 != "best.json" }
    /// A folder a run was written in: its best.json, or its config.yaml beside its metrics.jsonl or checkpoints/ (a run
    /// under way, or stopped, writes those first).
    public static func isRun(_ dir: String) -> Bool {
        func exists(_ name: String) -> Bool { FileManager.default.fileExists(atPath: dir + "/" + name) }
        return exists("best.json") || (exists("config.yaml") && (exists("metrics.jsonl") || exists("checkpoints")))
    }
    /// A checkpoint's metadata file, step-NNNNNNNN.json.
    public static func isCheckpointMetadata(_ name: String) -> Bool { name.hasPrefix("step-") && name.hasSuffix(".json") }
    /// A run folder without a best.json: its config.yaml is there, its best.json not (a fine-tuning run writes its own
    /// when training ends; a pretraining run writes checkpoints/best.json with its first checkpoint after a validation).
    public static func isUnfinished(_ dir: String) -> Bool {
        FileManager.default.fileExists(atPath: dir + "/config.yaml") && !FileManager.default.fileExists(atPath: dir + "/best.json")
            && !FileManager.default.fileExists(atPath: dir + "/checkpoints/best.json")
    }
    /// A pretraining run's folder: checkpoints/best.json, no best.json of its own (a fine-tuning run's).
    public static func isPretrainingRun(_ dir: String) -> Bool {
        FileManager.default.fileExists(atPath: dir + "/checkpoints/best.json") && !FileManager.default.fileExists(atPath: dir + "/best.json")
    }
}

/// What a file written by training is ("a checkpoint's tensors", "a run's best.json", ...), by its name and
/// neighbours, under the name given and the one links resolve to, or by its first bytes (`contentKind`); nil for any
/// other file. Outputs of the scoring
/// commands never replace one: they are the results of runs, and inputs of others.
public func runFileKind(_ path: String) -> String? {
    for url in [URL(fileURLWithPath: path), URL(fileURLWithPath: resolvedPath(path))] {
        let name = url.lastPathComponent, dir = url.deletingLastPathComponent().path
        func exists(_ sibling: String) -> Bool { FileManager.default.fileExists(atPath: dir + "/" + sibling) }
        if name.hasSuffix(".safetensors") {
            // Beside a JSON of its name: a checkpoint's, unless its header says it is embed's output (embed --output
            // e.safetensors next to an evaluation's e.json).
            if exists(String(name.dropLast(".safetensors".count)) + ".json") && !isEmbeddingsFile(path) { return "a checkpoint's tensors" }
            if exists("config.json") && exists("vocab.txt") { return "an encoder's weights" }
        }
        if RunLayout.isCheckpointMetadata(name) { return "a checkpoint's metadata" }
        if ["best.json", "folds.csv", "config.yaml", "metrics.jsonl"].contains(name) { return "a run's \(name)" }
        // A run's results (its report and plots, Launch/finetune's evaluation and curves): written once, beside its config.
        if RunLayout.results.contains(name) && RunLayout.isRun(dir) {
            return "a run's result \(name)"
        }
        // Any file of an encoder folder (its weights are matched above): its vocabulary, configs, README, ... and those
        // of its module folders (a sentence-transformers 1_Pooling/config.json).
        for folder in [url.deletingLastPathComponent(), url.deletingLastPathComponent().deletingLastPathComponent()] {
            if ["model.safetensors", "config.json"].allSatisfy({ FileManager.default.fileExists(atPath: folder.path + "/" + $0) }) {
                return "a file of the encoder folder \(folder.path)"
            }
        }
        if name.hasSuffix(".store") { return "a feature store" }
        if name.hasPrefix("events.out.tfevents.") { return "a run's TensorBoard event file" }
        // A batch-size sweep (Launch/sweep-batch DIR): DIR/points.tsv, its points' logs DIR/runs/bB.log and the report
        // sweep-report writes beside them.
        if name == "points.tsv" && exists("runs") { return "a sweep's points.tsv" }
        if ["sweep.csv", "sweep.svg", "sweep.png", "summary.md", "batches.txt"].contains(name) && exists("points.tsv") { return "a sweep's \(name)" }
        if name.hasSuffix(".log") && url.deletingLastPathComponent().lastPathComponent == "runs"
            && FileManager.default.fileExists(atPath: url.deletingLastPathComponent().deletingLastPathComponent().path + "/points.tsv") {
            return "a sweep point's log"
        }
    }
    return contentKind(path)
}

/// Whether `path` is `cladmop embed`'s output: a safetensors file whose header records `"format":"cladmop-embeddings"`.
func isEmbeddingsFile(_ path: String) -> Bool {
    safetensorsHeader(path)?.contains("\"format\":\"cladmop-embeddings\"") == true
}

/// The JSON header of a safetensors file (a little-endian u64 length, then that many bytes starting with '{'; at
/// most 16 MiB read: embed's metadata sorts after its paths, which can be long); nil for any other file.
private func safetensorsHeader(_ path: String) -> String? {
    var st = stat()
    guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_size >= 10 else { return nil }
    let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var head = [UInt8](repeating: 0, count: 9)
    guard read(fd, &head, 9) == 9 else { return nil }
    let length = (0..<8).reduce(UInt64(0)) { $0 | UInt64(head[$1]) << (8 * UInt64($1)) }
    guard head[8] == UInt8(ascii: "{"), length >= 2, length <= UInt64(st.st_size) - 8 else { return nil }
    var header = [UInt8](repeating: 0, count: Int(min(length, 16 << 20)))
    guard pread(fd, &header, header.count, 8) == header.count else { return nil }
    return String(decoding: header, as: UTF8.self)
}

/// What a file is by its first bytes, whatever its name: a feature store (the CLADMOPF magic), a TOP trial CSV (its
/// header), a list of NCT ids (its first line: data.exclude_file, the held-out test trials), an evaluation
/// (`evaluate --json` / `baseline --json`: a JSON object with its metric keys), or a safetensors file
/// (model weights or a checkpoint's tensors; not `cladmop embed`'s embeddings, an explicit output that embed replaces);
/// nil for anything else or a file that cannot be read.
func contentKind(_ path: String) -> String? {
    var st = stat()
    guard stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_size >= 10 else { return nil }
    let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var head = [UInt8](repeating: 0, count: 4096)
    let n = read(fd, &head, head.count)
    guard n >= 10 else { return nil }
    if head.starts(with: Array("CLADMOPF".utf8)) { return "a feature store (by its CLADMOPF header)" }
    // A TOP trial file (the data every command reads): its header names the TOP columns (quoted or not, after a BOM).
    let firstLine = String(decoding: head[..<n].prefix { $0 != UInt8(ascii: "\n") }, as: UTF8.self)
    let columns = Set(firstLine.split(separator: ",").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "\u{FEFF}\"\r ")) })
    if ["nctid", "criteria", "icdcodes", "smiless"].allSatisfy(columns.contains) { return "a TOP trial CSV (by its header)" }
    // Its first line that holds more than a comment, as data.exclude_file is read (comments after '#', blank lines).
    let lines = String(decoding: head[..<n], as: UTF8.self).split(whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" })
    let first = lines.lazy.map { String($0.prefix { $0 != "#" }).trimmingCharacters(in: CharacterSet.whitespaces.union(CharacterSet(charactersIn: "\u{FEFF}\r"))) }
        .first { !$0.isEmpty } ?? ""
    if isNCTID(first) {
        return "a list of NCT ids (by its first line, as data.exclude_file's held-out trials)"
    }
    if head[..<n].first(where: { ![0x20, 0x09, 0x0A, 0x0D].contains($0) }) == UInt8(ascii: "{"), st.st_size <= 16 << 20,
       let data = FileManager.default.contents(atPath: path),
       let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
       ["n", "threshold", "roc_auc", "pr_auc", "f1_at_threshold"].allSatisfy({ object[$0] != nil }) {
        return "an evaluation (evaluate --json or baseline --json, by its keys)"
    }
    if let header = safetensorsHeader(path) {
        if header.contains("\"format\":\"cladmop-embeddings\"") { return nil }
        return "a safetensors file (model weights or a checkpoint's tensors, by its header)"
    }
    return nil
}
