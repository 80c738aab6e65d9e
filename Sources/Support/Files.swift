import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A read-only memory map of a whole file (MAP_SHARED: ranks on one node share the page cache).
public final class MappedFile {
    public let path: String
    public let bytes: UnsafeRawBufferPointer

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
    }

    deinit { if let b = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: b), bytes.count) } }
}

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
/// not hide it. A file this process replaces (`writeFileAtomically`) or deletes (`forget`) is dropped, so that an
/// inode the file system reuses for a new file is not mistaken for it. `writeFileAtomically` refuses to replace a
/// file read, so no command overwrites an input it read (a checkpoint, its metadata, best.json, folds.csv, a
/// config, a CSV, a feature store, the encoder's files), whatever flag named the output.
public enum FilesRead {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var files: [FileID: (path: String, readAs: Set<String>)] = [:]
    struct FileID: Hashable { var device: UInt64, inode: UInt64 }
    static func id(_ st: stat) -> FileID { FileID(device: UInt64(st.st_dev), inode: UInt64(st.st_ino)) }

    /// Records a file just opened for reading (`st` its stat) as what it was read (`readAs`; "" for any file).
    public static func note(_ st: stat, path: String, as readAs: String = "") {
        lock.lock(); defer { lock.unlock() }
        files[id(st), default: (path, [])].readAs.insert(readAs)
    }

    /// The path under which this process read the file now at `path` and what it read it as, or nil.
    public static func read(at path: String) -> (path: String, readAs: Set<String>)? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        lock.lock(); defer { lock.unlock() }
        return files[id(st)]
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

/// The temporary name an output is written under before its rename: hidden, beside it (the same file system), per
/// process (`DIR/.NAME.tmp-PID`); cleanups look for this pattern. NAME is shortened (whole characters) when the
/// temporary name would pass the file system's 255 bytes, so any name that is valid itself can be written.
public func temporaryPath(for path: String) -> String {
    let url = URL(fileURLWithPath: path)
    let suffix = ".tmp-\(getpid())", limit = 255 - 1 - suffix.utf8.count
    var name = "", bytes = 0
    for c in url.lastPathComponent {
        bytes += c.utf8.count
        guard bytes <= limit else { break }
        name.append(c)
    }
    return url.deletingLastPathComponent().path + "/." + name + suffix
}

/// Writes `data` to `path` atomically: a temporary file in the same folder, fsync, rename, fsync of the
/// folder. A crash at any moment leaves either the old file or the new one, never a partial file.
/// A `path` that is a file this process read (`FilesRead`) is refused (an InputError naming both), unless
/// `replacingInput` (the files a command deliberately rewrites after reading them: a resumed run's metrics.jsonl,
/// config.yaml, best.json and checkpoints) or `replacingFileReadAs` names what every read of it was (a feature store
/// rebuilt over a stale or damaged one it opened, and read as nothing else).
public func writeFileAtomically(_ path: String, replacingInput: Bool = false, replacingFileReadAs: String? = nil,
                                _ write: (FileHandle) throws -> Void) throws {
    if !replacingInput, let input = FilesRead.read(at: path), replacingFileReadAs.map({ input.readAs != [$0] }) ?? true {
        throw InputError(file: path, "is \(input.path == path ? "an input" : "the input \(input.path)") this command read; refusing to overwrite it, choose another output path")
    }
    let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
    let tmp = temporaryPath(for: path)
    guard FileManager.default.createFile(atPath: tmp, contents: nil) else {
        throw InputError(file: path, "cannot create \(tmp): \(String(cString: strerror(errno)))")
    }
    do {
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: tmp))
        do {
            try write(handle)
            try handle.synchronize()
            try handle.close()
        } catch {
            try? handle.close()
            throw error
        }
        FilesRead.forget(path)     // the file it replaces (its inode may be reused)
        guard rename(tmp, path) == 0 else { throw InputError(file: path, "cannot rename: \(String(cString: strerror(errno)))") }
    } catch {
        unlink(tmp)
        if let e = error as? InputError { throw e }
        throw InputError(file: path, "write failed: \(describeWriteError(error))")
    }
    let dfd = open(dir.isEmpty ? "." : dir, O_RDONLY)
    if dfd >= 0 { fsync(dfd); close(dfd) }
}

/// The system's reason for a failed write ("No space left on device", "File too large"), not Foundation's
/// generic "The operation could not be completed".
public func describeWriteError(_ error: Error) -> String {
    let ns = error as NSError
    for e in [ns, ns.userInfo[NSUnderlyingErrorKey] as? NSError].compactMap({ $0 }) where e.domain == NSPOSIXErrorDomain {
        return String(cString: strerror(Int32(e.code)))
    }
    if ns.domain == NSCocoaErrorDomain && ns.code == NSFileWriteVolumeReadOnlyError { return String(cString: strerror(EROFS)) }
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
