import Support
import Foundation
import NN

/// One CSV record: its fields and the 1-based line where each field starts.
public struct CSVRecord {
    public var fields: [String]
    public var lines: [Int]
    public var columns: [Int]
    public var line: Int { lines.first ?? 0 }
}

/// RFC 4180 CSV: comma-separated, fields optionally in double quotes, "" for a quote inside quotes,
/// quoted fields may span lines. LF, CR LF and a lone CR all end a line, inside quoted fields too (where the
/// break is kept as a single \n), and a leading UTF-8 byte-order mark is dropped, so a file gives the same
/// records whatever its line endings. Errors name `name`:line:column. (`readCSV` reads a file.)
public func parseCSV(data: Data, name: String) throws -> [CSVRecord] {
    let bytes = [UInt8](data)
    let quote = UInt8(ascii: "\""), comma = UInt8(ascii: ","), lf = UInt8(ascii: "\n"), cr = UInt8(ascii: "\r")
    var records: [CSVRecord] = []
    var fields: [String] = [], lines: [Int] = [], cols: [Int] = []
    var field: [UInt8] = []
    var line = 1, col = 1
    var i = 0
    var fieldStartLine = 1, fieldStartCol = 1
    var atFieldStart = true
    func endField() throws {
        guard let s = String(validating: field, as: UTF8.self) else {
            throw InputError(file: name, line: fieldStartLine, column: fieldStartCol, "field is not valid UTF-8")
        }
        fields.append(s); lines.append(fieldStartLine); cols.append(fieldStartCol)
        field.removeAll(keepingCapacity: true)
        atFieldStart = true
    }
    /// Steps over the line ending at i (LF, CR LF or CR).
    func skipLineEnding() {
        i += bytes[i] == cr && i + 1 < bytes.count && bytes[i + 1] == lf ? 2 : 1
        line += 1; col = 1
    }
    // A feature store named as the trials, or text in another encoding: said as such, not as the first stray byte the
    // parser meets ("stray quote inside an unquoted field"). (The magic is FeatureStore.magic; this file is also
    // compiled alone by the CSV fuzz harness.)
    if bytes.starts(with: Array("CLADMOPF".utf8)) {
        throw InputError(file: name, "is a feature store (cladmop featurize's output), not CSV text: give the TOP-format CSV "
                         + "it was featurized from (a store is read through data.feature_store)")
    }
    // A safetensors file (model weights, a checkpoint's tensors, embeddings): an 8-byte little-endian header length
    // that fits the file, then the header's JSON object (a session 50 probe gave evaluate --data an embeddings file).
    if bytes.count >= 10, bytes[8] == UInt8(ascii: "{"),
       case let length = bytes[0..<8].enumerated().reduce(UInt64(0), { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }),
       length >= 2, length <= UInt64(bytes.count - 8) {
        throw InputError(file: name, "is a safetensors file (model weights, a checkpoint's tensors or embeddings, by its header), not CSV text; "
                         + "expected a TOP-format CSV")
    }
    if bytes.starts(with: [0xFF, 0xFE]) || bytes.starts(with: [0xFE, 0xFF]) || bytes.starts(with: [0, 0, 0xFE, 0xFF]) {
        throw InputError(file: name, line: 1, column: 1, "UTF-16 or UTF-32 text (its byte-order mark); expected UTF-8 CSV text: save the file as UTF-8")
    }
    if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { i = 3 }   // UTF-8 byte-order mark
    while i < bytes.count {
        let c = bytes[i]
        if atFieldStart { fieldStartLine = line; fieldStartCol = col; atFieldStart = false }
        if c == quote && field.isEmpty {
            // Quoted field.
            let qLine = line, qCol = col
            i += 1; col += 1
            var closed = false
            while i < bytes.count {
                let q = bytes[i]
                if q == quote {
                    if i + 1 < bytes.count && bytes[i + 1] == quote { field.append(q); i += 2; col += 2; continue }
                    i += 1; col += 1; closed = true; break
                }
                if q == lf || q == cr { field.append(lf); skipLineEnding(); continue }
                field.append(q); i += 1; col += 1
            }
            if !closed { throw InputError(file: name, line: qLine, column: qCol, "unterminated quoted field (a \" opened here is never closed)") }
            if i < bytes.count, bytes[i] != comma, bytes[i] != lf, bytes[i] != cr {
                throw InputError(file: name, line: line, column: col, "unexpected character after a closing quote (expected , or end of line)")
            }
            continue
        }
        if c == comma { try endField(); i += 1; col += 1; continue }
        if c == lf || c == cr {
            try endField()
            if !(fields.count == 1 && fields[0].isEmpty) {
                records.append(CSVRecord(fields: fields, lines: lines, columns: cols))
            }
            fields = []; lines = []; cols = []
            skipLineEnding()
            continue
        }
        if c == quote {
            throw InputError(file: name, line: line, column: col, "stray quote inside an unquoted field")
        }
        field.append(c); i += 1; col += 1
    }
    if !atFieldStart || !fields.isEmpty {
        try endField()
        if !(fields.count == 1 && fields[0].isEmpty) { records.append(CSVRecord(fields: fields, lines: lines, columns: cols)) }
    }
    return records
}

/// Parses a Python list literal of strings: `['a', "b's", 'c\'d']`, `[]`.
/// Escapes: \\ \' \" \n \t \r \xNN \uNNNN. Throws a message with the 1-based character offset.
public func parsePythonStringList(_ text: String) throws -> [String] {
    let s = Array(text.unicodeScalars)
    var i = 0
    func skipSpace() { while i < s.count, s[i] == " " || s[i] == "\n" || s[i] == "\t" || s[i] == "\r" { i += 1 } }
    func fail(_ m: String) -> Error { ListLiteralError(message: m, offset: i + 1) }
    skipSpace()
    guard i < s.count, s[i] == "[" else { throw fail("expected '[' to open a list") }
    i += 1
    var out: [String] = []
    skipSpace()
    if i < s.count, s[i] == "]" { i += 1; skipSpace(); if i != s.count { throw fail("text after the closing ']'") }; return out }
    while true {
        skipSpace()
        guard i < s.count, s[i] == "'" || s[i] == "\"" else { throw fail("expected a quoted string") }
        let quote = s[i]; i += 1
        var v = String.UnicodeScalarView()
        var closed = false
        while i < s.count {
            let ch = s[i]
            if ch == quote { i += 1; closed = true; break }
            if ch == "\\" {
                guard i + 1 < s.count else { break }
                let e = s[i + 1]
                switch e {
                case "n": v.append("\n"); i += 2
                case "t": v.append("\t"); i += 2
                case "r": v.append("\r"); i += 2
                case "\\", "'", "\"": v.append(e); i += 2
                case "x", "u":
                    let n = e == "x" ? 2 : 4
                    guard i + 2 + n <= s.count, let code = UInt32(String(String.UnicodeScalarView(s[(i + 2)..<(i + 2 + n)])), radix: 16),
                          let u = Unicode.Scalar(code) else { throw fail("bad \\\(e) escape") }
                    v.append(u); i += 2 + n
                default: v.append("\\"); v.append(e); i += 2   // Python keeps unknown escapes as written
                }
                continue
            }
            v.append(ch); i += 1
        }
        if !closed { throw fail("unterminated string") }
        out.append(String(v))
        skipSpace()
        guard i < s.count else { throw fail("expected ',' or ']'") }
        if s[i] == "," { i += 1; skipSpace(); if i < s.count, s[i] == "]" { i += 1; break }; continue }
        if s[i] == "]" { i += 1; break }
        throw fail("expected ',' or ']'")
    }
    skipSpace()
    if i != s.count { throw fail("text after the closing ']'") }
    return out
}

public struct ListLiteralError: Error { public let message: String; public let offset: Int }
