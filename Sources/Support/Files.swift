import CSystem
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A read-only memory map of a whole file (MAP_SHARED: ranks on one node share the page cache). A file that shrinks
/// under the map (truncated or rewritten in place by another program) would end the process with SIGBUS at the
/// next read past its new end: the map is watched (`cs_watch_mapping`), and such a read ends the process with exit
/// status 2 and a line naming the file (`setFaultPrefix` gives it the rank).
public final class MappedFile {
    public let path: String
    public let bytes: UnsafeRawBufferPointer
    private var watchSlot: Int32 = -1

    /// `readAs` names what the file is read as, for `FilesRead` (a feature store may be replaced by its rebuild).
    public init(path: String, readAs: String = "") throws {
        self.path = path
        // Before open: opening a FIFO blocks until a writer appears, a device may never end.
        var pre = stat()
        guard stat(path, &pre) == 0 else { throw InputError(file: path, "cannot open: \(String(cString: strerror(errno)))") }
        guard (pre.st_mode & S_IFMT) == S_IFREG else {
            let kind = (pre.st_mode & S_IFMT) == S_IFDIR ? "a directory" : (pre.st_mode & S_IFMT) == S_IFIFO ? "a FIFO" : "not a regular file"
            throw InputError(file: path, "is \(kind); expected a regular file")
        }
        let fd = open(path, O_RDONLY | O_NONBLOCK)
        guard fd >= 0 else { throw InputError(file: path, "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw InputError(file: path, "cannot stat") }
        FilesRead.note(st, path: path, as: readAs)
        let size = Int(st.st_size)
        if size == 0 {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            throw InputError(file: path, "cannot map: \(String(cString: strerror(errno)))")
        }
        bytes = UnsafeRawBufferPointer(start: p, count: size)
        watchSlot = cs_watch_mapping(p, size, printable(path))
        if watchSlot < 0 && MappedFile.unwatchedSaid.withLock({ let first = !$0; $0 = true; return first }) {
            standardErrorWrite(Data("warning: \(printable(path)): more than 1,024 files are mapped at once, or its path is longer than 4,095 bytes: if it shrinks while read, the process ends with SIGBUS, not with a message naming it\n".utf8))
        }
    }
    private static let unwatchedSaid = Locked(false)

    deinit {
        cs_unwatch_mapping(watchSlot)
        if let b = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: b), bytes.count) }
    }
}

/// How the line of a mapped file that shrank under its map begins (`MappedFile`): "error: " until the communicator
/// sets "error (rank R of W): ", as the job's other errors.
public func setFaultPrefix(_ prefix: String) { cs_set_fault_prefix(prefix) }

/// What ends the job after that line, called with exit status 2 from the signal handler (MPI_Abort under mpirun:
/// the other ranks would otherwise wait in a collective for the watchdog where no mpirun kills them, as under srun).
public func setFaultAbort(_ abortJob: @convention(c) (Int32) -> Void) { cs_set_fault_abort(abortJob) }

/// JSON of a typed value with its keys sorted, so that equal values give equal bytes (checksums, hashes and diffs
/// rely on it); `pretty` indents, `plainSlashes` writes `/` instead of `\/`. Changing a call's options changes bytes
/// that checkpoints record (their metadata checksum), so each caller keeps the options its format was written with.
public func encodeJSON<T: Encodable>(_ value: T, pretty: Bool = false, plainSlashes: Bool = false) throws -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    if pretty { encoder.outputFormatting.insert(.prettyPrinted) }
    if plainSlashes { encoder.outputFormatting.insert(.withoutEscapingSlashes) }
    return try encoder.encode(value)
}

/// `checksum64` in hexadecimal (lower case, no leading zeros): the form checkpoints, stores and reports record.
public func checksumHex(_ bytes: UnsafeRawBufferPointer) -> String { String(checksum64(bytes), radix: 16) }
/// `checksumHex` of a buffer of bytes.
public func checksumHex(_ data: Data) -> String { data.withUnsafeBytes { checksumHex($0) } }
/// `checksumHex` of a text's UTF-8 bytes.
public func checksumHex(_ text: String) -> String { checksumHex(Data(text.utf8)) }

/// 64-bit FNV-1a variant over 8-byte words (fast enough for hundreds of MB), then the tail bytes.
public func checksum64(_ data: UnsafeRawBufferPointer, seed: UInt64 = 0xCBF2_9CE4_8422_2325) -> UInt64 {
    var h = seed
    let words = data.count / 8
    if let base = data.baseAddress {
        for i in 0..<words {
            h = (h ^ base.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)) &* 0x0000_0100_0000_01B3
            h ^= h >> 29
        }
        for i in words * 8..<data.count { h = (h ^ UInt64(data[i])) &* 0x0000_0100_0000_01B3 }
    }
    return h
}

/// The files this process has read (readRegularFile, MappedFile), by device and inode: links, relative paths and
/// hard links name the same entry, and a change of an input's metadata (chmod, touch) while the command runs does
/// not hide it. A file this process replaces (`writeFileAtomically`) or deletes (`forget`) is dropped, and so is one
/// that no name it was read under leads to any more (deleted or replaced by someone else), so that an inode the file
/// system reuses for a new file is not mistaken for it (a test process reads and removes many files).
/// `writeFileAtomically` refuses to replace a file read, so no command overwrites an input it read (a checkpoint, its
/// metadata, best.json, folds.csv, a config, a CSV, a feature store, the encoder's files), whatever flag named it.
public enum FilesRead {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var files: [FileID: (path: String, readAs: Set<String>, names: Set<String>)] = [:]
    struct FileID: Hashable { var device: UInt64, inode: UInt64 }
    static func id(_ st: stat) -> FileID { FileID(device: UInt64(st.st_dev), inode: UInt64(st.st_ino)) }

    /// Records a file just opened for reading (`st` its stat) as what it was read (`readAs`; "" for any file). An
    /// earlier entry of its inode that no name leads to any more was another file's: replaced, not added to.
    public static func note(_ st: stat, path: String, as readAs: String = "") {
        let key = id(st)
        var names: Set<String> = [path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path]
        if let real = realpath(path, nil) { names.insert(String(cString: real)); free(real) }
        lock.lock()
        let earlier = files[key]
        lock.unlock()
        let stale = earlier.map { !leads($0.names, to: key) } ?? false
        lock.lock(); defer { lock.unlock() }
        if stale && files[key]?.names == earlier?.names { files[key] = nil }
        files[key, default: (path, [], [])].readAs.insert(readAs)
        files[key]!.names.formUnion(names)
    }

    /// Whether one of `names` still leads to the file `key` (stat: links followed).
    private static func leads(_ names: Set<String>, to key: FileID) -> Bool {
        names.contains { name in
            var now = stat()
            return stat(name, &now) == 0 && id(now) == key
        }
    }

    /// The path under which this process read the file now at `path` and what it read it as, or nil. An entry none of
    /// whose names leads to that file any more (the input deleted, renamed or replaced since) is taken for another
    /// file's reused inode and dropped: a rename-based write there no longer touches what was read under those names.
    public static func read(at path: String) -> (path: String, readAs: Set<String>)? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        let key = id(st)
        lock.lock()
        let entry = files[key]
        lock.unlock()
        guard let entry else { return nil }
        guard leads(entry.names, to: key) else {
            lock.lock()
            if files[key]?.names == entry.names { files[key] = nil }    // unless a read noted it again meanwhile
            lock.unlock()
            return nil
        }
        return (entry.path, entry.readAs)
    }

    /// Drops the file now at `path` (about to be deleted or replaced by this process).
    public static func forget(_ path: String) {
        var st = stat()
        guard stat(path, &st) == 0 else { return }
        lock.lock(); defer { lock.unlock() }
        files[id(st)] = nil
    }

    /// Refuses (an InputError naming the file and the option) any output that is a file this process read.
    /// Commands with several outputs call it before writing the first, so a refusal leaves none written.
    public static func refuseOverwriting(_ outputs: [(option: String, path: String)]) throws {
        for (option, path) in outputs {
            if let input = read(at: path) {
                throw InputError(file: path, "\(option) names \(input.path == path ? "an input" : "the input \(input.path)") this command read; refusing to overwrite it, choose another output path")
            }
        }
    }
}

/// Whether `a` and `b` both exist and are one file (device and inode, links followed): hard links, or two spellings.
public func isSameExistingFile(_ a: String, _ b: String) -> Bool {
    var x = stat(), y = stat()
    return stat(a, &x) == 0 && stat(b, &y) == 0 && FilesRead.id(x) == FilesRead.id(y)
}

/// The path with links and `.`/`..` resolved as far as it exists (the rest appended), for comparing paths. A link
/// whose target does not exist (yet) resolves to that target: a write through it creates the target
/// (`writeFileAtomically`), so two outputs, one named through such a link, are the same file.
public func resolvedPath(_ path: String) -> String {
    var path = path, st = stat(), hops = 0
    while hops < 40, lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFLNK, stat(path, &st) != 0, let target = linkTarget(path) {
        path = target
        hops += 1
    }
    let url = URL(fileURLWithPath: path).standardizedFileURL
    var existing = url, rest: [String] = []
    while !FileManager.default.fileExists(atPath: existing.path) && existing.path != "/" {
        rest.insert(existing.lastPathComponent, at: 0)
        existing = existing.deletingLastPathComponent()
    }
    var base = existing.resolvingSymlinksInPath()
    for part in rest { base.appendPathComponent(part) }
    return base.path
}

/// The target of the symbolic link `path`, a relative one taken from the link's folder with that folder's own links
/// resolved (as the kernel follows it: `..` after a linked folder leads out of the folder it links to); nil if
/// `path` is no link.
func linkTarget(_ path: String) -> String? {
    guard let destination = try? FileManager.default.destinationOfSymbolicLink(atPath: path) else { return nil }
    if destination.hasPrefix("/") { return destination }
    return URL(fileURLWithPath: path).deletingLastPathComponent().resolvingSymlinksInPath().path + "/" + destination
}

/// Where `writeFileAtomically` puts what it writes to `path`: through a symbolic link to the link's target (also one
/// that does not exist yet), unless that target is a file training wrote or a run's result (`runFileKind`) and the
/// write is not a feature store's (`replacingFileReadAs`): then at `path`, replacing the link. `path` itself for any
/// other path.
public func writeTarget(_ path: String, replacingFileReadAs: String? = nil) -> String {
    var st = stat()
    guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFLNK, let target = linkTarget(path) else { return path }
    let resolved = resolvedPath(target)
    return replacingFileReadAs != nil || runFileKind(resolved) == nil ? resolved : path
}

/// The temporary name an output is written under before its rename: hidden, beside it (the same file system), per
/// process (`DIR/.NAME.tmp-PID`); cleanups look for this pattern. When that could pass the file system's 255 bytes,
/// NAME is shortened (whole characters) and ends in "~" and the checksum of the whole name, so that two long names
/// alike in their first 230-odd bytes (a split's two halves) get two temporaries, not one written twice.
public func temporaryPath(for path: String) -> String {
    let url = URL(fileURLWithPath: path)
    let full = url.lastPathComponent, suffix = ".tmp-\(getpid())"
    var name = full
    // Sized for a process id of 10 digits, whatever this one's: a later writer shortens a name as an earlier one did,
    // and finds its stale temporaries.
    let room = 255 - 1 - ".tmp-".utf8.count - 10
    if full.utf8.count > room {
        let tag = "~" + checksumHex(full), limit = room - tag.utf8.count
        var bytes = 0
        name = ""
        for c in full {
            bytes += c.utf8.count
            guard bytes <= limit else { break }
            name.append(c)
        }
        name += tag
    }
    return url.deletingLastPathComponent().path + "/." + name + suffix
}

/// Refuses to replace what is at `target` (the file an output `path` is written to, links resolved) when it is
/// neither a regular file nor a symbolic link, nor absent: a rename over a device or FIFO would turn it into a file
/// (as root, a link to /dev/null named as an output would have replaced /dev/null).
public func refuseNonRegularOutput(_ target: String, reportingAs path: String) throws {
    // A chain of symbolic links that loops (loop1 -> loop2 -> loop1): written through, it had replaced one of its links.
    if isLoopingLink(path) {
        throw InputError(file: path, "is a symbolic link that loops back on itself (\(String(cString: strerror(ELOOP)))); choose another output path")
    }
    var st = stat()
    guard lstat(target, &st) == 0 else { return }
    let kind = st.st_mode & S_IFMT
    guard kind != S_IFREG && kind != S_IFLNK else { return }
    throw InputError(file: path, (target == path ? "is " : "leads to \(target), ") + "\(fileKind(st.st_mode)); an output replaces a regular file only: choose another path")
}

/// Writes `data` to `path` atomically: a temporary file in the same folder, fsync, rename, fsync of the
/// folder. A crash at any moment leaves either the old file or the new one, never a partial file; SIGINT, SIGTERM or
/// SIGHUP while it writes removes the temporary file (`TemporaryFiles`). A `path` that is a symbolic link is written
/// through (its target is replaced, as a shell redirect would), unless the target is a file training wrote or a run's
/// result (`runFileKind`) and this write is not a feature store's: then the link itself is replaced.
/// A `path` that is a file this process read (`FilesRead`) is refused (an InputError naming both), unless
/// `replacingInput` (the files a command deliberately rewrites after reading them: a resumed run's metrics.jsonl,
/// config.yaml, best.json and checkpoints) or `replacingFileReadAs` names what every read of it was (a feature store
/// rebuilt over a stale or damaged one it opened, and read as nothing else).
public func writeFileAtomically(_ path: String, replacingInput: Bool = false, replacingFileReadAs: String? = nil,
                                keepingResults: Bool = false, _ write: (FileHandle) throws -> Void) throws {
    let group = OutputGroup(keepingResults: keepingResults)
    try group.write(path, replacingInput: replacingInput, replacingFileReadAs: replacingFileReadAs, write)
    try group.commit()
}

/// Outputs that appear together or not at all (evaluate's --json, --report and --plots; a plot's SVG and PNG): `write`
/// puts each in its temporary file and syncs it, with the checks of `writeFileAtomically`, and `commit` renames them
/// into place once every one is written. A write that fails, or a group given up without `commit`, removes the
/// temporaries: every file at the outputs' paths stays as it was (a full disk had left new curves beside an older or
/// missing evaluation).
public final class OutputGroup {
    private struct Pending { let tmp: String, target: String, path: String, slot: Int?, fd: Int32 }
    private var pending: [Pending] = [], removals: [String] = []
    private let keepingResults: Bool

    /// `keepingResults`: the outputs of a command that refuses to replace a result (`checkOutputs`: an evaluation, a
    /// file training wrote) do not replace one that another command wrote at their path while this one ran (two
    /// `evaluate --json` to one path at once had both exited 0, one evaluation lost): the commit refuses, naming it,
    /// and an output whose path was free is placed with link(2), which never replaces a file.
    public init(keepingResults: Bool = false) { self.keepingResults = keepingResults }

    /// Writes `path`'s content to its temporary file (`writeFileAtomically`'s rules for links and inputs; with
    /// `followingLinks: false` a link at `path` is replaced, not its target, and an input there is still refused);
    /// returns that file's path, where the content can be read back before the commit.
    @discardableResult
    public func write(_ path: String, replacingInput: Bool = false, replacingFileReadAs: String? = nil, followingLinks: Bool = true,
                      _ write: (FileHandle) throws -> Void) throws -> String {
        if !replacingInput { try refuseInput(at: path, followingLinks: followingLinks, unlessReadAs: replacingFileReadAs) }
        // An output named through a symbolic link replaces the link's target (also one that does not exist yet), unless
        // that target is a file training wrote or a run's result (`runFileKind`: another run's best.json or report) and
        // not the kind this write replaces (a feature store behind a linked data.feature_store): then the link itself is
        // replaced and the target stays. A run's own files that a command rewrites (replacingInput) replace what is at
        // their path, and so does an output written with `followingLinks: false` (a plot's PNG: a link there is replaced).
        let target = replacingInput || !followingLinks ? path : writeTarget(path, replacingFileReadAs: replacingFileReadAs)
        try refuseNonRegularOutput(target, reportingAs: path)
        // Two outputs of the group at one file (links to one target, or hard links of one file) would share its
        // temporary file, or make two of what the user named as one: refused.
        if let other = pending.first(where: { resolvedPath($0.target) == resolvedPath(target) || isSameExistingFile($0.target, target) }) {
            let how = resolvedPath(other.target) == resolvedPath(target) ? resolvedPath(target) : "a hard link of it"
            throw InputError(file: path, "is the same file as \(other.path) (\(how)), which this command writes too; each output needs a file of its own")
        }
        let (tmp, slot, _, fd) = try createTemporary(for: target, reportingAs: path)
        do {
            let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: false)
            try write(handle)
            try handle.synchronize()
        } catch {
            unlink(tmp); TemporaryFiles.unregister(slot); close(fd)
            // A run folder removed meanwhile is the reason, not the write's "No such file or directory".
            try WrittenFolders.check(writing: target)
            if let e = error as? InputError { throw e }
            throw InputError(file: path, "write failed: \(describeWriteError(error))")
        }
        // The descriptor (and its flock) is kept until the rename is done.
        pending.append(Pending(tmp: tmp, target: target, path: path, slot: slot, fd: fd))
        return tmp
    }

    /// `path` removed at the commit (a plot's PNG that could not be rendered this time: no stale image beside the new SVG).
    /// (A file this command read is refused there, as for `write`; a link there is removed, not what it leads to.)
    public func removeAtCommit(_ path: String) throws {
        try refuseInput(at: path, followingLinks: false, unlessReadAs: nil)
        removals.append(path)
    }

    /// Refuses `path` as an output when it is a file this command read (unless every read of it was as
    /// `unlessReadAs`); without following links, a link at `path` is replaced or removed and whatever it leads to
    /// stays, so no input is at stake.
    private func refuseInput(at path: String, followingLinks: Bool, unlessReadAs: String?) throws {
        guard followingLinks || !isSymbolicLink(path), let input = FilesRead.read(at: path),
              unlessReadAs.map({ input.readAs != [$0] }) ?? true else { return }
        throw InputError(file: path, "is \(input.path == path ? "an input" : "the input \(input.path)") this command read; refusing to overwrite it, choose another output path")
    }

    /// Removes the files of `removeAtCommit` and renames every written output into place. (A rename that fails, which
    /// needs the folder to change under the command, leaves the outputs renamed before it in place.)
    public func commit() throws {
        let signal = try commitHoldingSignals()
        if signal != 0 {
            TemporaryFiles.endBySignal(signal, saying: "cladmop: interrupted while it renamed its outputs into place; it ended after the last of them")
        }
    }

    /// The renames as one step: a SIGINT, SIGTERM or SIGHUP meanwhile is returned (0: none) once they are all done, for
    /// `commit` to end the command by it (it had left new curves beside no evaluation, or beside an earlier one). A
    /// rename that fails with a signal held ends the command by the signal, saying why the renames stopped.
    func commitHoldingSignals() throws -> Int32 {
        defer { discard() }
        var failure: Error?
        let signal = TemporaryFiles.holdingSignals {
            do { try renameAll() } catch { failure = error }
        }
        if let failure {
            if signal != 0 {
                discard()
                TemporaryFiles.endBySignal(signal, saying: "cladmop: interrupted while it renamed its outputs into place, where one failed: \(failure)")
            }
            throw failure
        }
        return signal
    }

    /// Called after each rename (tests: a signal between two).
    var afterRename: (() -> Void)?

    /// The result another command wrote at `p.target` while this one ran (`keepingResults`: the entry there changed
    /// since this process started, and is a result), or nil. What was there before it started passed the checks at the
    /// start (`checkOutputs`), a link that leads to a run's result that does not exist included (a review: the first
    /// form of this check refused such a link once the whole evaluation was done).
    private func resultWrittenMeanwhile(_ p: Pending) -> String? {
        var st = stat()
        guard keepingResults, lstat(p.target, &st) == 0 else { return nil }
        if let started = processStartSeconds, Double(st.st_ctim.tv_sec) + Double(st.st_ctim.tv_nsec) / 1e9 < started { return nil }
        return runFileKind(p.target)
    }

    private func refuseResult(_ what: String, at p: Pending) -> InputError {
        InputError(file: p.path, "\(what) was written there by another command while this one ran; it is kept and this command's outputs are not written: choose another output path")
    }

    private func renameAll() throws {
        // Before anything is placed: a result another command wrote meanwhile at any output's path.
        for p in pending { if let what = resultWrittenMeanwhile(p) { throw refuseResult(what, at: p) } }
        // First: a rename that fails must not leave an earlier PNG beside a new SVG.
        for path in removals { unlink(path) }
        removals = []
        while !pending.isEmpty {
            let p = pending.removeFirst()
            defer { TemporaryFiles.unregister(p.slot); close(p.fd) }
            FilesRead.forget(p.target)     // the file it replaces (its inode may be reused)
            // A free path is taken with link(2), which fails where a file appeared since the check above; a file
            // there (the user's own, checked at the start) is replaced by the rename below, a result is refused.
            var st = stat()
            if keepingResults, lstat(p.target, &st) != 0 {
                if link(p.tmp, p.target) == 0 {
                    unlink(p.tmp); syncFolder(of: p.target); afterRename?(); continue
                }
                if errno == EEXIST {
                    var own = stat(), now = stat()
                    if fstat(p.fd, &own) == 0, lstat(p.target, &now) == 0, FilesRead.id(own) == FilesRead.id(now) {
                        unlink(p.tmp); syncFolder(of: p.target); afterRename?(); continue     // linked after all (NFS)
                    }
                    if let what = resultWrittenMeanwhile(p) { unlink(p.tmp); throw refuseResult(what, at: p) }
                }
                // Another error (a file system without hard links), or a file of the user's: the rename below.
            }
            guard rename(p.tmp, p.target) == 0 else {
                let reason = String(cString: strerror(errno))
                unlink(p.tmp)
                try WrittenFolders.check(writing: p.target)
                throw InputError(file: p.path, "cannot rename: \(reason)")
            }
            syncFolder(of: p.target)
            afterRename?()
        }
    }

    /// Removes the temporaries not renamed yet.
    public func discard() {
        for p in pending { unlink(p.tmp); TemporaryFiles.unregister(p.slot); close(p.fd) }
        pending = []; removals = []
    }

    deinit { discard() }
}

/// When this process started (`markProcessStart`, the first step of main), in seconds since the epoch; nil until then.
nonisolated(unsafe) private(set) var processStartSeconds: Double?

/// Records now as this process's start, for `OutputGroup(keepingResults:)` (/proc's start time is to the second).
public func markProcessStart() {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    processStartSeconds = Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

/// Creates the temporary file an output `path` is written under (`temporaryPath`), registered for removal on a signal
/// (`TemporaryFiles`): its (device, inode) and the descriptor to write it through (read-write), which holds a flock
/// on it where the file system has them (on NFS too, which needs the write access) and says "being written" to
/// `removeStaleTemporaries` of other processes: the caller closes it once the file is renamed or removed.
/// Errors name `reportingAs`.
func createTemporary(for path: String, reportingAs: String) throws -> (path: String, slot: Int?, id: (dev: UInt64, ino: UInt64), fd: Int32) {
    try WrittenFolders.check(writing: path)
    let tmp = temporaryPath(for: path)
    removeStaleTemporaries(of: tmp)
    let fd = open(tmp, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0o666)
    guard fd >= 0 else { throw InputError(file: reportingAs, "cannot create \(tmp): \(String(cString: strerror(errno)))") }
    _ = flock(fd, LOCK_EX | LOCK_NB)     // a file system without flock: the temporary is simply not claimed
    let slot = TemporaryFiles.register(tmp)
    var st = stat()
    guard fstat(fd, &st) == 0 else {
        let reason = String(cString: strerror(errno))
        unlink(tmp); close(fd); TemporaryFiles.unregister(slot)
        throw InputError(file: reportingAs, "cannot read back \(tmp): \(reason)")
    }
    return (tmp, slot, (UInt64(st.st_dev), UInt64(st.st_ino)), fd)
}

/// The run folders this process writes (locked by `lockRunFolder`), each by the path it was named by and its (device,
/// inode) then. One removed or replaced while the command runs (a person's `rm -rf`; other cladmop commands are kept
/// out by the lock, but not from a new folder at the same path) would be created again by the next write, or mixed
/// with another run started there: every write under it (`createTemporary`, `makeDirectory`, a metrics record) is
/// refused instead, which ends the job with the reason.
public enum WrittenFolders {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var held: [(named: String, path: String, id: FilesRead.FileID)] = []

    /// Records the folder `path`, open as `descriptor`, as one this process writes.
    public static func hold(_ path: String, descriptor: Int32) {
        var st = stat()
        guard fstat(descriptor, &st) == 0 else { return }
        lock.lock(); defer { lock.unlock() }
        held.append((path, absolute(path), FilesRead.id(st)))
    }

    /// `path` made absolute and standardized, links not resolved (runs/x/ and /cwd/runs/./x are one folder; the
    /// metrics log and TensorBoard name theirs absolute).
    static func absolute(_ path: String) -> String { URL(fileURLWithPath: path).standardizedFileURL.path }

    /// Throws an InputError when `path` is in (or is) a held folder that is no longer the folder at its path.
    public static func check(writing path: String) throws {
        lock.lock()
        let folders = held
        lock.unlock()
        guard !folders.isEmpty else { return }
        let target = absolute(path)
        for (named, dir, id) in folders where target == dir || target.hasPrefix(dir == "/" ? dir : dir + "/") {
            var st = stat()
            let gone = stat(dir, &st) != 0
            if gone || FilesRead.id(st) != id {
                throw InputError(file: named, gone
                    ? "the run folder was removed while this command was writing it; stopping (a write would create it again, holding part of this run)"
                    : "the run folder was replaced by another folder of that name while this command was writing it (removed, and another run started there?); stopping so that the two runs do not mix")
            }
        }
    }
}

/// Removes the temporary files of the same output (`temporaryPath`: ".NAME.tmp-PID" beside it) that a write killed
/// by SIGKILL, or on a machine that went down, left (no handler ran): a feature store's is hundreds of MB, and nothing
/// else would remove it. One is removed only when its process does not run on this machine, it was last written
/// over a minute ago, and nobody holds the flock its writer takes (`createTemporary`; a writer on another node of a
/// shared file system holds it too); where the file system has no flock, none is removed.
public func removeStaleTemporaries(of tmp: String, olderThan seconds: Int = 60) {
    let url = URL(fileURLWithPath: tmp)
    let name = url.lastPathComponent
    guard let cut = name.range(of: ".tmp-", options: .backwards) else { return }
    let prefix = name[..<cut.upperBound]
    removeStaleTemporaries(in: url.deletingLastPathComponent().path, olderThan: seconds) { $0.hasPrefix(prefix) && $0 != name }
}

/// Removes every stale temporary file (".NAME.tmp-PID") of folder `dir` (a run's checkpoints/, after each checkpoint),
/// under the conditions of `removeStaleTemporaries(of:)`.
public func removeStaleTemporaries(inFolder dir: String) {
    removeStaleTemporaries(in: dir) { $0.hasPrefix(".") && $0.contains(".tmp-") }
}

private func removeStaleTemporaries(in dir: String, olderThan seconds: Int = 60, where matches: (String) -> Bool) {
    for other in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] where matches(other) {
        guard let cut = other.range(of: ".tmp-", options: .backwards), let pid = Int32(other[cut.upperBound...]), pid > 0,
              pid != getpid(), kill(pid, 0) != 0 && errno == ESRCH else { continue }
        let path = dir + "/" + other
        var st = stat()
        guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_mtim.tv_sec < time(nil) - seconds else { continue }
        let fd = open(path, O_WRONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { continue }
        if flock(fd, LOCK_EX | LOCK_NB) == 0 { unlink(path) }
        close(fd)
    }
}

/// Whether `path` itself is a symbolic link (not followed).
public func isSymbolicLink(_ path: String) -> Bool {
    var st = stat()
    return lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK
}

/// Removes `path`: a file, a link (not its target) or a folder with everything in it. Goes on past an entry it
/// cannot remove; returns the first such entry and why, or nil when all is gone (or nothing was there).
@discardableResult
public func removeTree(_ path: String) -> (path: String, reason: String)? {
    var st = stat()
    guard lstat(path, &st) == 0 else { return errno == ENOENT ? nil : (path, String(cString: strerror(errno))) }
    var first: (path: String, reason: String)?
    if (st.st_mode & S_IFMT) == S_IFDIR {
        do {
            for name in try FileManager.default.contentsOfDirectory(atPath: path) {
                if let failed = removeTree(path + "/" + name), first == nil { first = failed }
            }
        } catch { first = (path, "cannot list it: \(describeWriteError(error))") }
        if rmdir(path) != 0 && first == nil { first = (path, String(cString: strerror(errno))) }
    } else if unlink(path) != 0 {
        first = (path, String(cString: strerror(errno)))
    }
    return first
}

/// Whether `path` is a symbolic link whose chain of links loops (loop1 -> loop2 -> loop1).
public func isLoopingLink(_ path: String) -> Bool {
    var st = stat()
    return lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFLNK && stat(path, &st) != 0 && errno == ELOOP
}

/// fsync of the file at `path`: a temporary written by other means (a copy) is on disk before it is renamed into
/// place. Nil when it is; else the reason (strerror of the open or fsync, read before anything else can change errno).
public func syncFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return String(cString: strerror(errno)) }
    let failure = fsync(fd) == 0 ? nil : String(cString: strerror(errno))
    close(fd)
    return failure
}

/// fsync of the folder holding `path`: a rename or link into it survives a crash.
public func syncFolder(of path: String) {
    let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
    let dfd = open(dir.isEmpty ? "." : dir, O_RDONLY)
    if dfd >= 0 { fsync(dfd); close(dfd) }
}

/// Writes new files as one (a split's two halves): each is written to a temporary file and then linked into place,
/// never replacing a file (another command that wrote one meanwhile keeps it: refused). On any failure, and on SIGINT,
/// SIGTERM or SIGHUP before the last is in place, none of them is left, nor any temporary file.
public func writeNewFilesTogether(_ files: [(path: String, data: Data)]) throws {
    var written: [(tmp: String, path: String, slot: Int?, id: (dev: UInt64, ino: UInt64))] = []
    var placed: [Int?] = []
    var descriptors: [Int32] = []
    defer { descriptors.forEach { close($0) } }     // (and their flocks) once every file is in place or removed
    func undo() {
        for (k, f) in written.enumerated() {
            if k < placed.count { TemporaryFiles.removeIfSame(f.path, f.id) }
            unlink(f.tmp)
        }
        placed.forEach(TemporaryFiles.unregister); written.forEach { TemporaryFiles.unregister($0.slot) }
    }
    do {
        for (path, data) in files {
            let (tmp, slot, id, fd) = try createTemporary(for: path, reportingAs: path)
            written.append((tmp, path, slot, id)); descriptors.append(fd)
            do {
                let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: false)
                try handle.write(contentsOf: data)
                try handle.synchronize()
            } catch { throw InputError(file: path, "write failed: \(describeWriteError(error))") }
        }
        for f in written {
            // Guarded by the temporary file's inode before the link: a signal removes the path only if it is this file.
            placed.append(TemporaryFiles.register(f.path, ifSameAs: f.id))
            if link(f.tmp, f.path) == 0 { continue }
            let reason = errno
            if reason == EEXIST {
                throw InputError(file: f.path, "exists now (another command wrote it while this one ran); choose another path")
            }
            // A file system without hard links (vfat, some network mounts): checked, then renamed (a file another command
            // creates between the two is replaced, as before this function).
            guard [EPERM, ENOTSUP, EOPNOTSUPP, EMLINK].contains(reason) else {
                throw InputError(file: f.path, "cannot create: \(String(cString: strerror(reason)))")
            }
            var existing = stat()
            guard lstat(f.path, &existing) != 0 else { throw InputError(file: f.path, "exists now (another command wrote it while this one ran); choose another path") }
            guard rename(f.tmp, f.path) == 0 else { throw InputError(file: f.path, "cannot create: \(String(cString: strerror(errno)))") }
        }
    } catch {
        undo()
        throw error
    }
    for f in written { unlink(f.tmp) }
    placed.forEach(TemporaryFiles.unregister); written.forEach { TemporaryFiles.unregister($0.slot) }
    for f in files { syncFolder(of: f.path) }
}

/// Files to remove if the command ends by SIGINT, SIGTERM or SIGHUP (`installSignalHandlers`): the temporary files
/// being written (`writeFileAtomically`, `writeNewFilesTogether`), and outputs not complete without the next one.
/// Fixed slots of fixed buffers (the handler allocates nothing), a slot's path copied before it is marked in use.
public enum TemporaryFiles {
    static let slots = 32, capacity = 4096
    nonisolated(unsafe) static let paths = UnsafeMutablePointer<CChar>.allocate(capacity: slots * capacity)
    nonisolated(unsafe) static let inUse = UnsafeMutablePointer<Int32>.allocate(capacity: slots)
    /// A slot's guard: remove its path only while it is this file (device, inode); (0, 0): unconditionally.
    nonisolated(unsafe) static let identity = UnsafeMutablePointer<(UInt64, UInt64)>.allocate(capacity: slots)
    nonisolated(unsafe) static var ready = false
    static let lock = NSLock()

    /// A slot holding `path` (nil when every slot is taken or the path is too long: it is then not cleaned up).
    public static func register(_ path: String, ifSameAs id: (dev: UInt64, ino: UInt64) = (0, 0)) -> Int? {
        lock.lock(); defer { lock.unlock() }
        if !ready { inUse.initialize(repeating: 0, count: slots); identity.initialize(repeating: (0, 0), count: slots); ready = true }
        let bytes = Array(path.utf8CString)
        guard bytes.count <= capacity, let free = (0..<slots).first(where: { inUse[$0] == 0 }) else { return nil }
        bytes.withUnsafeBufferPointer { (paths + free * capacity).update(from: $0.baseAddress!, count: bytes.count) }
        identity[free] = (id.dev, id.ino)
        inUse[free] = 1
        return free
    }

    public static func unregister(_ slot: Int?) {
        guard let slot else { return }
        lock.lock(); inUse[slot] = 0; lock.unlock()
    }

    /// Unlinks `path` if it is the file `id` (async-signal-safe: stat and unlink).
    static func removeIfSame(_ path: UnsafePointer<CChar>, _ id: (dev: UInt64, ino: UInt64)) {
        var st = stat()
        if id == (0, 0) || (stat(path, &st) == 0 && UInt64(st.st_dev) == id.dev && UInt64(st.st_ino) == id.ino) { unlink(path) }
    }
    static func removeIfSame(_ path: String, _ id: (dev: UInt64, ino: UInt64)) { path.withCString { removeIfSame($0, id) } }

    /// Removes every registered file (from a signal handler), naming each on standard error after `notice` (write(2)
    /// only: async-signal-safe).
    static func removeAll(notice: UnsafePointer<CChar>? = nil) {
        guard ready else { return }
        for i in 0..<slots where inUse[i] != 0 {
            let path = UnsafePointer(paths + i * capacity)
            var st = stat()
            guard stat(path, &st) == 0 else { continue }
            removeIfSame(path, identity[i])
            if let notice, stat(path, &st) != 0 {
                var newline: UInt8 = 10     // not a string literal: its conversion to a pointer can allocate
                _ = write(2, notice, strlen(notice)); _ = write(2, path, strlen(path)); _ = write(2, &newline, 1)
            }
        }
    }

    /// [0]: 1 while `holdingSignals` runs; [1]: the signal that came meanwhile (0: none). Made before any handler runs.
    nonisolated(unsafe) static let held: UnsafeMutablePointer<Int32> = {
        let p = UnsafeMutablePointer<Int32>.allocate(capacity: 2); p.initialize(repeating: 0, count: 2); return p
    }()
    /// A line the handler writes when it ends the process (`sayOnInterrupt`); [0] nil: none.
    nonisolated(unsafe) static let interruptLine: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?> = {
        let p = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: 1); p.initialize(to: nil); return p
    }()

    /// Runs `body` with SIGINT, SIGTERM and SIGHUP held (when `installSignalHandlers` handles them): one that comes
    /// meanwhile ends nothing part way and is returned (0: none), for the caller to undo what `body` did and then
    /// `endBySignal`. For short steps that must happen all together (--overwrite's renames).
    /// Inside another `holdingSignals` the outer one keeps holding, and returns the signal. Main thread only (the
    /// state is the process's; the outputs are written there).
    public static func holdingSignals(_ body: () throws -> Void) rethrows -> Int32 {
        if held[0] != 0 { try body(); return 0 }
        held[1] = 0; held[0] = 1
        do { try body() } catch { held[0] = 0; throw error }
        held[0] = 0     // first: a signal from here on is acted on by the handler, one before it is in held[1]
        return held[1]
    }

    /// Ends the process by `signal` as the handler would (removing the registered files), after writing `line`.
    public static func endBySignal(_ signal: Int32, saying line: String) -> Never {
        standardErrorWrite(Data((line + "\n").utf8))
        removeAll(notice: signal >= 0 && signal < 32 ? UnsafePointer(notices[Int(signal)]) : nil)
        Glibc.signal(signal, SIG_DFL)
        raise(signal)
        exit(128 + signal)
    }

    /// A line for the handler to write if a signal ends the process before the next call (nil: none).
    public static func sayOnInterrupt(_ line: String?) {
        let old = interruptLine[0]
        interruptLine[0] = line.map { strdup($0 + "\n") }
        free(old)
    }

    /// The start of the line naming each file removed on a handled signal (indexed by signal number).
    nonisolated(unsafe) static let notices = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: 32)

    /// On SIGINT, SIGTERM and SIGHUP: remove the registered files, naming each ("cladmop: interrupted (SIGTERM);
    /// removed the unfinished PATH"), then end by the signal as before. Nothing is said when nothing was being written
    /// (a rank that mpirun ends after another rank's error).
    public static func installSignalHandlers() {
        notices.initialize(repeating: nil, count: 32)
        _ = held; _ = interruptLine     // made now, not first in a handler
        for (sig, name) in [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM"), (SIGHUP, "SIGHUP")] {
            notices[Int(sig)] = strdup("cladmop: interrupted (\(name)); removed the unfinished ")
        }
        for sig in [SIGINT, SIGTERM, SIGHUP] {
            var previous = sigaction()
            sigaction(sig, nil, &previous)
            // A signal the process was started ignoring (SIGINT of a background job of a script) stays ignored.
            if unsafeBitCast(previous.__sigaction_handler.sa_handler, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self) { continue }
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { received in
                if TemporaryFiles.held[0] != 0 { TemporaryFiles.held[1] = received; return }     // holdingSignals: after its step
                if let line = TemporaryFiles.interruptLine[0] { _ = write(2, line, strlen(line)) }
                TemporaryFiles.removeAll(notice: received >= 0 && received < 32 ? UnsafePointer(TemporaryFiles.notices[Int(received)]) : nil)
                signal(received, SIG_DFL)
                raise(received)
            }
            // The other two wait while one is handled (a second signal does not end the cleanup part way).
            sigemptyset(&action.sa_mask)
            for other in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&action.sa_mask, other) }
            sigaction(sig, &action, nil)
        }
    }
}

/// The system's reason for a failed write ("No space left on device", "File too large"), not Foundation's
/// generic "The operation could not be completed".
public func describeWriteError(_ error: Error) -> String {
    let ns = error as NSError
    for e in [ns, ns.userInfo[NSUnderlyingErrorKey] as? NSError].compactMap({ $0 }) where e.domain == NSPOSIXErrorDomain {
        return String(cString: strerror(Int32(e.code)))
    }
    if ns.domain == NSCocoaErrorDomain && ns.code == NSFileWriteVolumeReadOnlyError { return String(cString: strerror(EROFS)) }
    if ns.domain == NSCocoaErrorDomain && ns.code == NSFileWriteOutOfSpaceError { return String(cString: strerror(ENOSPC)) }
    return ns.localizedDescription + " (\(ns.domain) \(ns.code))"
}

/// `target` as a path relative to the folder `base`, both made absolute and standardized (links are not resolved):
/// `relativePath(of: "/r/pretrained/a.json", from: "/r/members/2/checkpoints")` is "../../../pretrained/a.json".
public func relativePath(of target: String, from base: String) -> String {
    let t = URL(fileURLWithPath: target).standardizedFileURL.pathComponents, b = URL(fileURLWithPath: base).standardizedFileURL.pathComponents
    var common = 0
    while common < t.count && common < b.count && t[common] == b[common] { common += 1 }
    return (Array(repeating: "..", count: b.count - common) + t[common...]).joined(separator: "/")
}
