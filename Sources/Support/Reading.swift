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
    guard !path.isEmpty else { throw InputError("an empty path was given for the \(what); expected a file path") }
    var st = stat()
    guard stat(path, &st) == 0 else { throw InputError(file: path, "cannot read the \(what): \(String(cString: strerror(errno)))") }
    guard (st.st_mode & S_IFMT) == S_IFREG else { throw InputError(file: path, "is \(fileKind(st.st_mode)); expected the \(what)") }
    return Int(st.st_size)
}

/// Refuses `path` when it is a symbolic link that leads nowhere (a loop, or a target that does not exist), which
/// existence checks read as "no such file": `what` says what the link stands for. Nothing for any other path.
public func requireResolvableLink(_ path: String, what: String) throws {
    var lst = stat(), st = stat()
    guard lstat(path, &lst) == 0, (lst.st_mode & S_IFMT) == S_IFLNK, stat(path, &st) != 0 else { return }
    let code = errno
    let to = "a symbolic link to " + ((try? FileManager.default.destinationOfSymbolicLink(atPath: path)) ?? "?")
    let why = code == ELOOP ? "a loop of symbolic links"
        : to + (code == ENOENT ? ", which does not exist" : ", which cannot be reached (\(String(cString: strerror(code))))")
    throw InputError(file: path, "is \(why); expected \(what) (restore the file, or the link's target)")
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

/// A JSON decoding error as "key a.b.c: what was wrong", not Foundation's dump: the value expected in JSON's words
/// ("a number", "a JSON object"), the whole text named "the top level". With the `data` decoded, a number that
/// fits no value of its key (1.5 or 1e20 for a whole number; Foundation names no key for it) is told from text that
/// is not JSON.
public func describeDecodingError(_ error: Error, data: Data? = nil) -> String {
    func path(_ keys: [CodingKey]) -> String {
        keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
    }
    func at(_ keys: [CodingKey]) -> String { keys.isEmpty ? "the top level" : "key \(path(keys))" }
    func kind(_ type: Any.Type) -> String {
        let name = "\(type)"
        if name.hasPrefix("Dictionary") { return "a JSON object" }
        if name.hasPrefix("Array") { return "a JSON array" }
        switch name {
        case "Double", "Float": return "a number"
        case "Int", "Int64", "Int32", "UInt64", "UInt32", "UInt": return "a whole number"
        case "Bool": return "true or false"
        case "String": return "a string"
        default: return name
        }
    }
    guard let e = error as? DecodingError else { return "\(error)" }
    switch e {
    case .keyNotFound(let key, let c): return "key \(path(c.codingPath + [key])) is missing"
    case .typeMismatch(let type, let c): return "\(at(c.codingPath)): expected \(kind(type))"
    case .valueNotFound(let type, let c): return "\(at(c.codingPath)): expected \(kind(type)), found null"
    case .dataCorrupted(let c):
        let underlying = (c.underlyingError as NSError?).map { " (\($0.localizedDescription))" } ?? ""
        if c.codingPath.isEmpty, let data {
            guard let problem = jsonSyntaxProblem(data) else {
                return "a value fits no type of its key, probably a number (a fraction or a number too large where a whole number is expected)\(underlying)"
            }
            return "not valid JSON (\(problem))"
        }
        return c.codingPath.isEmpty ? "not valid JSON\(underlying)" : "key \(path(c.codingPath)): \(c.debugDescription)"
    @unknown default: return "\(error)"
    }
}

/// What is wrong with `data` as JSON text, in the parser's words with its position ("Invalid value around character
/// 14.", "Too many nested arrays or dictionaries around character 2561.", "Number 1e400 is not representable in
/// Swift."), or nil when it parses.
public func jsonSyntaxProblem(_ data: Data) -> String? {
    do { _ = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]); return nil } catch {
        let e = error as NSError
        return (e.userInfo[NSDebugDescriptionErrorKey] as? String) ?? e.localizedDescription
    }
}

/// The path ("a.b", "members[2].x") of the first key that one JSON object of `data` holds twice, or nil. JSON readers
/// keep different ones of such keys (Foundation's the first, Python's the last), so the file would say one thing to
/// this tool and another to a script: the readers of hand-editable JSON (checkpoints, best.json, evaluations) refuse
/// it. Text that is not JSON is left to the parser (nil, or a key of what was read); for text nested deeper than 512
/// levels (which the decoders refuse) the answer is nil.
public func duplicateJSONKey(_ data: Data) -> String? {
    struct Frame { var isObject: Bool, path: String, keys: Set<String> = [], key = "", index = 0 }
    let b = [UInt8](data)
    var frames: [Frame] = [], expectKey = false, i = 0
    func childPath() -> String {
        guard let f = frames.last else { return "" }
        return f.isObject ? (f.path.isEmpty ? f.key : f.path + "." + f.key) : f.path + "[\(f.index)]"
    }
    while i < b.count {
        switch b[i] {
        case UInt8(ascii: "{"), UInt8(ascii: "["):
            guard frames.count < 512 else { return nil }
            let isObject = b[i] == UInt8(ascii: "{")
            frames.append(Frame(isObject: isObject, path: childPath()))
            expectKey = isObject
        case UInt8(ascii: "}"), UInt8(ascii: "]"):
            _ = frames.popLast(); expectKey = false
        case UInt8(ascii: ","):
            guard !frames.isEmpty else { break }
            if frames[frames.count - 1].isObject { expectKey = true } else { frames[frames.count - 1].index += 1 }
        case UInt8(ascii: "\""):
            var j = i + 1
            while j < b.count && b[j] != UInt8(ascii: "\"") { j += b[j] == UInt8(ascii: "\\") ? 2 : 1 }
            guard j < b.count else { return nil }
            if expectKey, frames.last?.isObject == true {
                let body = b[(i + 1)..<j]
                let key = body.contains(UInt8(ascii: "\\"))
                    ? (try? JSONSerialization.jsonObject(with: Data(b[i...j]), options: .fragmentsAllowed)) as? String ?? String(decoding: body, as: UTF8.self)
                    : String(decoding: body, as: UTF8.self)
                let last = frames.count - 1
                if frames[last].keys.contains(key) { return frames[last].path.isEmpty ? key : frames[last].path + "." + key }
                frames[last].keys.insert(key); frames[last].key = key
                expectKey = false
            }
            i = j
        default: break
        }
        i += 1
    }
    return nil
}

/// Refuses JSON text of `file` in which one object holds a key twice (`duplicateJSONKey`).
public func refuseDuplicateJSONKeys(_ data: Data, file: String) throws {
    if let key = duplicateJSONKey(data) {
        throw InputError(file: file, "key \(key) appears twice in one object; expected each key once (JSON readers keep different ones: this tool the first, Python the last)")
    }
}
