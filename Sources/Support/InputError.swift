import Foundation

/// An error in what the user gave (a file, a row, a config key, a checkpoint): the CLI prints it
/// and exits with status 2. `description` names the file, line, column or key and what was expected.
public struct InputError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ message: String) { description = message }
    /// "file:line:column: message" (line and column 1-based; omitted when nil).
    public init(file: String, line: Int? = nil, column: Int? = nil, _ message: String) {
        var where_ = file
        if let line { where_ += ":\(line)" }
        if let column { where_ += ":\(column)" }
        description = "\(where_): \(message)"
    }

    /// "origin: key = value is invalid (expected ...)": the one wording of a value that its key does not take;
    /// `origin` (a file, or a file and a section of it) is left out when nil.
    /// The value is shown quoted when it would not read as itself (empty, spaces at an end, an invisible or
    /// non-ASCII space, written as \u{...}), and cut after 200 characters.
    public static func invalid(_ key: String, _ value: Any, expected: String, in origin: String? = nil) -> InputError {
        let text = "\(value)"
        var shown = text.count > 200 ? String(text.prefix(200)) + "... (\(text.count) characters)" : text
        let invisible = { (u: Unicode.Scalar) in
            (u.properties.isWhitespace && u != " ") || [.format, .control].contains(u.properties.generalCategory)
        }
        if text.isEmpty || text.first?.isWhitespace == true || text.last?.isWhitespace == true || text.unicodeScalars.contains(where: invisible) {
            // Quoted, with each invisible character (a tab, a no-break or zero-width space, a line break) written out.
            shown = "\"" + shown.unicodeScalars.map { invisible($0) ? "\\u{\(String($0.value, radix: 16))}" : String($0) }.joined() + "\""
        }
        let message = "\(key) = \(shown) is invalid (expected \(expected))"
        return origin.map { InputError(file: $0, message) } ?? InputError(message)
    }
}

/// `message` with its control characters other than line breaks and tabs written as escapes (`\u{0}`): a NUL or an
/// escape sequence from a file's bytes, quoted in an error, must not reach the terminal as it is; nor a bidirectional
/// control (U+202E ...), which would show the message's text in another order than it has.
public func printable(_ message: String) -> String {
    var out = ""
    for u in message.unicodeScalars {
        if (u.properties.generalCategory == .control && u != "\n" && u != "\t") || u.properties.isBidiControl { out += "\\u{\(String(u.value, radix: 16))}" }
        else { out.unicodeScalars.append(u) }
    }
    return out
}

/// A relative path of the configuration (`key`) that is not there: named with its key and the folder it was looked for
/// in (the Launch scripts run in the repository root, so a command run elsewhere does not find the defaults).
public func requireConfiguredPath(_ path: String, key: String, whose: String = "",
                                  hint: String = "the folder it is relative to (the repository root, for the defaults)") throws {
    guard !path.isEmpty, !path.hasPrefix("/"), !FileManager.default.fileExists(atPath: path) else { return }
    throw InputError(file: path, "\(key): not found in the current folder \(printable(FileManager.default.currentDirectoryPath)) (a relative path of "
        + "the configuration\(whose) is the current folder's); run in \(hint), or give --set \(key)=PATH")
}
