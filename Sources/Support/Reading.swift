import Foundation

/// The bytes of `path`, refusing before it is opened anything that is not a regular file (a FIFO would block,
/// a device never end, a directory is not data) and files over `limit` bytes. `what` says what the file was
/// expected to be, for the message.
public func readRegularFile(_ path: String, what: String, limit: Int = 1 << 30) throws -> Data {
    var st = stat()
    guard stat(path, &st) == 0 else { throw InputError(file: path, "cannot read the \(what): \(String(cString: strerror(errno)))") }
    guard (st.st_mode & S_IFMT) == S_IFREG else {
        let kind = (st.st_mode & S_IFMT) == S_IFDIR ? "a directory" : (st.st_mode & S_IFMT) == S_IFIFO ? "a FIFO" : "not a regular file"
        throw InputError(file: path, "is \(kind); expected the \(what)")
    }
    guard Int(st.st_size) <= limit else { throw InputError(file: path, "is \(st.st_size) bytes; the \(what) is expected to be at most \(limit)") }
    guard let data = FileManager.default.contents(atPath: path) else {
        throw InputError(file: path, "cannot read the \(what): \(String(cString: strerror(errno)))")
    }
    return data
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
