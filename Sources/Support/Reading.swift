import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What `mode` (a stat st_mode) is, in words: "a regular file", "a directory", "a FIFO", ...
public func fileKind(_ mode: mode_t) -> String {
    switch mode & S_IFMT {
    case S_IFREG: return "a regular file"
    case S_IFDIR: return "a directory"
    case S_IFIFO: return "a FIFO"
    case S_IFCHR: return "a character device"
    case S_IFBLK: return "a block device"
    case S_IFSOCK: return "a socket"
    case S_IFLNK: return "a symbolic link"
    default: return "not a regular file"
    }
}

/// Refuses, before anything opens it, a path that is not a regular file: a FIFO would block the reader
/// forever, a device never end, a directory is not data. Symbolic links are followed. `what` names what the
/// file was expected to be ("hostfile" -> "is a FIFO; expected the hostfile"). Returns the size in bytes.
@discardableResult
public func requireRegularFile(_ path: String, what: String) throws -> Int {
    var st = stat()
    guard stat(path, &st) == 0 else { throw InputError(file: path, "cannot read the \(what): \(String(cString: strerror(errno)))") }
    guard (st.st_mode & S_IFMT) == S_IFREG else { throw InputError(file: path, "is \(fileKind(st.st_mode)); expected the \(what)") }
    return Int(st.st_size)
}

/// The bytes of `path`, refusing before it is opened anything that is not a regular file (a FIFO would block,
/// a device never end, a directory is not data) and files over `limit` bytes. `what` says what the file was
/// expected to be, for the message.
public func readRegularFile(_ path: String, what: String, limit: Int = 1 << 30) throws -> Data {
    let size = try requireRegularFile(path, what: what)
    guard size <= limit else { throw InputError(file: path, "is \(size) bytes; the \(what) is expected to be at most \(limit)") }
    guard let data = FileManager.default.contents(atPath: path) else {
        throw InputError(file: path, "cannot read the \(what): \(String(cString: strerror(errno)))")
    }
    var st = stat()
    if stat(path, &st) == 0 { FilesRead.note(st, path: path) }
    return data
}

/// The last `bytes` bytes of the regular file `path` (all of it when shorter), refusing anything else before opening
/// it: enough to read a log's last record without reading the log.
public func readTail(_ path: String, bytes: Int) throws -> Data {
    let size = try requireRegularFile(path, what: "file")
    guard let handle = FileHandle(forReadingAtPath: path) else { throw InputError(file: path, "cannot read: \(String(cString: strerror(errno)))") }
    defer { try? handle.close() }
    try handle.seek(toOffset: UInt64(max(0, size - bytes)))
    return try handle.readToEnd() ?? Data()
}

/// The lines of a UTF-8 text file, whatever its line endings: LF, CR LF and a lone CR all end a line, a
/// leading UTF-8 byte-order mark is dropped, and a final line ending does not start an empty last line
/// (like Python's readlines). Refuses a non-regular file before opening it; text that is not UTF-8 is an
/// error naming the line.
public func readTextLines(_ path: String, what: String, limit: Int = 1 << 30) throws -> TextLines {
    try TextLines(data: readRegularFile(path, what: what, limit: limit), name: path, what: what)
}

/// Lines of UTF-8 text (see `readTextLines`), and what the original line endings were.
public struct TextLines {
    /// The lines, without their line endings; line n (1-based) is lines[n - 1].
    public let lines: [String]
    /// The text started with a UTF-8 byte-order mark (dropped from `lines`).
    public let hadByteOrderMark: Bool
    /// The first line (1-based) that ended with CR LF, and the first that ended with a lone CR.
    public let firstCRLFLine: Int?
    public let firstCRLine: Int?

    public init(data: Data, name: String, what: String) throws {
        var lines: [String] = [], crlf: Int? = nil, cr: Int? = nil, bom = false
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            let b = raw.bindMemory(to: UInt8.self)
            var i = 0
            if b.count >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF { bom = true; i = 3 }
            var start = i
            func take(_ end: Int) throws {
                guard let s = String(validating: UnsafeBufferPointer(rebasing: b[start..<end]), as: UTF8.self) else {
                    throw InputError(file: name, line: lines.count + 1, "is not valid UTF-8 text (expected the \(what) as UTF-8)")
                }
                lines.append(s)
            }
            while i < b.count {
                let c = b[i]
                if c == 0x0A {
                    try take(i); i += 1; start = i
                } else if c == 0x0D {
                    try take(i)
                    if i + 1 < b.count && b[i + 1] == 0x0A { crlf = crlf ?? lines.count; i += 2 } else { cr = cr ?? lines.count; i += 1 }
                    start = i
                } else {
                    i += 1
                }
            }
            if start < b.count { try take(b.count) }
        }
        self.lines = lines
        hadByteOrderMark = bom
        firstCRLFLine = crlf
        firstCRLine = cr
    }
}

/// A JSON decoding error as "key a.b.c: what was wrong", not Foundation's dump.
public func describeDecodingError(_ error: Error) -> String {
    func path(_ keys: [CodingKey]) -> String {
        keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
    }
    guard let e = error as? DecodingError else { return "\(error)" }
    switch e {
    case .keyNotFound(let key, let c): return "key \(path(c.codingPath + [key])) is missing"
    case .typeMismatch(let type, let c): return "key \(path(c.codingPath)): expected \(type)"
    case .valueNotFound(let type, let c): return "key \(path(c.codingPath)): expected \(type), found null"
    case .dataCorrupted(let c):
        let underlying = (c.underlyingError as NSError?).map { " (\($0.localizedDescription))" } ?? ""
        return c.codingPath.isEmpty ? "not valid JSON\(underlying)" : "key \(path(c.codingPath)): \(c.debugDescription)"
    @unknown default: return "\(error)"
    }
}
