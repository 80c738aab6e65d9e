import Foundation
import Support
import Yams

/// The YAML boundary of configurations. The parser recurses and expands aliases, so the text is checked
/// before it sees it: size, UTF-8 (the first bad byte's offset named), nesting depth, anchors and aliases
/// (refused: a config has no use for them, and an alias bomb would exhaust memory). The parsed tree is then
/// turned into plain values with duplicate keys and nested lists refused, each naming the key.
enum YAMLInput {
    static let maxBytes = 1 << 20, maxDepth = 16

    /// Parses `data` (from `origin`: a file, or `--set KEY`) into nested `[(key, value)]` maps, lists of
    /// scalars and scalars: a quoted scalar as its String, a plain one as a `PlainScalar` (its text and YAML 1.2 value).
    static func parse(_ data: Data, origin: String) throws -> Any? {
        guard data.count <= maxBytes else { throw InputError("\(origin): \(data.count) bytes; a configuration is at most \(maxBytes) bytes") }
        let text = try decodeUTF8(data, origin: origin)
        try scan(text, origin: origin)
        let node: Node?
        do { node = try Yams.compose(yaml: text) } catch { throw InputError("\(origin): not valid YAML: \(error)") }
        // A document of only `---` (or comments) is as empty as an empty file: the defaults.
        if let node, case .scalar(let s) = node, s.style == .plain, s.string.isEmpty { return nil }
        // Without aliases a tree has at most about two nodes per byte of its text (a key and its empty value): more
        // means an alias expanded, which the scan should have refused (an alias bomb would exhaust memory here).
        var budget = 2 * data.count + 2
        return try node.map { try value($0, path: "", origin: origin, depth: 0, budget: &budget) }
    }

    /// The text, or an error naming the byte offset (and line) of the first byte that is not UTF-8.
    static func decodeUTF8(_ data: Data, origin: String) throws -> String {
        if let s = String(data: data, encoding: .utf8) { return s.hasPrefix("\u{FEFF}") ? String(s.dropFirst()) : s }
        let bytes = [UInt8](data)
        var i = 0, line = 1
        while i < bytes.count {
            let b = bytes[i]
            let n = b < 0x80 ? 1 : b >> 5 == 0b110 ? 2 : b >> 4 == 0b1110 ? 3 : b >> 3 == 0b11110 ? 4 : 0
            guard n > 0, i + n <= bytes.count, (1..<n).allSatisfy({ bytes[i + $0] >> 6 == 0b10 }),
                  String(bytes: bytes[i..<(i + n)], encoding: .utf8) != nil else {
                throw InputError("\(origin): line \(line): byte offset \(i) (0x\(String(b, radix: 16))) is not valid UTF-8; configurations are UTF-8 text")
            }
            if b == 0x0A { line += 1 }
            i += n
        }
        throw InputError("\(origin): not valid UTF-8")
    }

    /// Nesting depth (indentation levels, "- " sequence entries, flow brackets, counted across lines) and anchors,
    /// aliases and tags where a node starts, outside quoted scalars and comments. Where a node may start: a line's start, after
    /// `key:`, a `-` entry or a `?` key (each followed by a space or tab), and in flow context
    /// after `[`, `{` or `,`; elsewhere & and * are characters of a plain value (`R &D`, `my *draft* store`, `x:*y`).
    /// A quote opens a quoted scalar only where a node starts, and is closed by the end of its line here (a quoted
    /// scalar that goes on is scanned as YAML: stricter, never blinder). `value`'s node budget stops an alias that
    /// got past this scan all the same.
    static func scan(_ text: String, origin: String) throws {
        var indents: [Int] = [], flow = 0
        for (number, line) in lines(text).enumerated() {
            let lineNo = number + 1, n = line.count
            func blank(_ k: Int) -> Bool { k >= n || line[k] == " " || line[k] == "\t" }
            var i = 0
            while i < n && line[i] == " " { i += 1 }
            if flow == 0 {
                guard i < n, line[i] != "#" else { continue }
                while let last = indents.last, last >= i { indents.removeLast() }
                indents.append(i)
            }
            var depth = indents.count + flow, quote: Unicode.Scalar? = nil, nodeStart = true
            var j = i
            while j < n {
                let c = line[j]
                if let q = quote {
                    if q == "\"" && c == "\\" { j += 2; continue }                            // an escape: \" is no end
                    if c == q {
                        if q == "'" && j + 1 < n && line[j + 1] == "'" { j += 2; continue }   // '' is one quote
                        quote = nil; nodeStart = false
                    }
                    j += 1; continue
                }
                if c == " " || c == "\t" { j += 1; continue }
                if c == "#" && (j == 0 || blank(j - 1)) { break }
                let atStart = nodeStart
                nodeStart = false
                if atStart && (c == "&" || c == "*") {
                    throw InputError("\(origin): line \(lineNo): YAML anchors and aliases (&name, *name) are not supported in configurations"
                                     + " (quote a value that starts with & or *: \"\(c)...\")")
                } else if atStart && (c == "\"" || c == "'") {
                    quote = c
                } else if atStart && (c == "[" || c == "{") {
                    flow += 1; depth += 1; nodeStart = true
                } else if flow > 0 && (c == "]" || c == "}") {
                    flow -= 1
                } else if flow > 0 && c == "," {
                    nodeStart = true
                } else if atStart && (c == "-" || c == "?") && blank(j + 1) {
                    if c == "-" { depth += 1 }
                    nodeStart = true
                } else if c == ":" && (blank(j + 1) || (flow > 0 && j + 1 < n && ",]}".unicodeScalars.contains(line[j + 1]))) {
                    nodeStart = true
                } else if atStart && c == "!" {
                    // A tag (!!str, !!null, !!python/object, !local) would re-type or be ignored by the reader: a
                    // probe's `seed: !!python/object:os.system 1` was read as 1, `!!null 64` as 64.
                    throw InputError("\(origin): line \(lineNo): YAML tags (!!str, !name) are not supported in configurations"
                                     + " (quote a value that starts with !: \"!...\")")
                }
                guard depth <= maxDepth else {
                    throw InputError("\(origin): line \(lineNo): nested deeper than \(maxDepth) levels; a configuration is sections of keys")
                }
                j += 1
            }
        }
    }

    /// The lines of `text` as YAML breaks them (\n, \r\n, \r), as scalars: "\r\n" is one Character, and a split by
    /// Characters had read a CRLF file as one line.
    static func lines(_ text: String) -> [[Unicode.Scalar]] {
        var out: [[Unicode.Scalar]] = [[]], previous: Unicode.Scalar = " "
        for u in text.unicodeScalars {
            if u == "\n" && previous == "\r" { previous = u; continue }
            if u == "\n" || u == "\r" { out.append([]) } else { out[out.count - 1].append(u) }
            previous = u
        }
        return out
    }

    /// Whether a number's text has a non-zero digit before its exponent (`1e-400`, which a Double reads as 0).
    static func writesNonZero(_ number: String) -> Bool {
        number.prefix { $0 != "e" && $0 != "E" }.contains { ("1"..."9").contains($0) }
    }

    /// A plain value of the composed tree (YAML's null as `YAMLNull`); duplicate keys and non-scalar list items refused.
    static func value(_ node: Node, path: String, origin: String, depth: Int, budget: inout Int) throws -> Any {
        let name = path.isEmpty ? "the top level" : "key \(path)"
        guard depth <= maxDepth else { throw InputError("\(origin): \(name): nested deeper than \(maxDepth) levels") }
        budget -= 1
        guard budget >= 0 else {
            throw InputError("\(origin): \(name): more values than its text holds: YAML aliases (*name) are not supported in configurations")
        }
        switch node {
        case .mapping(let mapping):
            var seen = Set<String>(), pairs: [(String, Any)] = []
            for (k, v) in mapping {
                guard case .scalar(let ks) = k else { throw InputError("\(origin): \(name): a key that is not a string") }
                let key = ks.string, sub = path.isEmpty ? key : path + "." + key
                guard seen.insert(key).inserted else { throw InputError("\(origin): key \(sub) appears twice") }
                pairs.append((key, try value(v, path: sub, origin: origin, depth: depth + 1, budget: &budget)))
            }
            return pairs
        case .sequence(let sequence):
            return try sequence.enumerated().map { (i, item) -> Any in
                guard case .scalar = item else { throw InputError("\(origin): \(name): list item \(i + 1) is not a single value") }
                let v = try value(item, path: path, origin: origin, depth: depth + 1, budget: &budget)
                if v is YAMLNull { throw InputError("\(origin): \(name): list item \(i + 1) is empty") }
                return v
            }
        case .scalar(let s):
            if s.style != .plain { return s.string }
            if node.null != nil { return YAMLNull() }     // the key decides: an empty section, or a key without a value
            return PlainScalar(text: s.string, value: resolve(s.string))
        }
    }

    /// A plain (unquoted) scalar's value by the YAML 1.2 core schema: `true`/`false` (also `True`, `TRUE`, ...),
    /// decimal integers (`012` is twelve), `0o17` and `0x1F`, decimal floats and `.inf`/`.nan`; any other text is a
    /// string. Yams resolves by YAML 1.1, where `no` is false, `012` is octal ten and `1:30` is ninety: values no
    /// researcher means in a configuration. 1e-400 (0 in a Double) stays text, which the key's check refuses.
    static func resolve(_ t: String) -> Any {
        if ["true", "True", "TRUE"].contains(t) { return true }
        if ["false", "False", "FALSE"].contains(t) { return false }
        let unsigned = t.hasPrefix("-") || t.hasPrefix("+") ? t.dropFirst() : Substring(t)
        let sign = t.hasPrefix("-") ? -1 : 1
        if !unsigned.isEmpty, unsigned.allSatisfy({ $0.isASCII && $0.isNumber }) {
            let digits = unsigned.drop { $0 == "0" }
            if digits.isEmpty { return 0 }
            if let v = Int(digits) { return sign * v }
        }
        for (prefix, digits) in [("0o", "01234567"), ("0x", "0123456789abcdefABCDEF")] where t.hasPrefix(prefix) && t.count > 2 {
            let body = t.dropFirst(2)
            if body.allSatisfy(digits.contains), let v = Int(body, radix: prefix == "0o" ? 8 : 16) { return v }
        }
        if [".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"].contains(t) { return Double.infinity }
        if ["-.inf", "-.Inf", "-.INF"].contains(t) { return -Double.infinity }
        if [".nan", ".NaN", ".NAN"].contains(t) { return Double.nan }
        if isDecimalNumber(t), let d = Double(t.hasPrefix("+") ? String(t.dropFirst()) : t) {
            return d == 0 && writesNonZero(t) ? t : d
        }
        return t
    }

    /// The YAML 1.2 core float grammar: [-+]? ( . [0-9]+ | [0-9]+ ( . [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
    static func isDecimalNumber(_ t: String) -> Bool {
        let unsigned = t.hasPrefix("-") || t.hasPrefix("+") ? t.dropFirst() : Substring(t)
        let mantissa = unsigned.prefix { $0 != "e" && $0 != "E" }, exponent = unsigned.dropFirst(mantissa.count)
        let parts = mantissa.split(separator: ".", omittingEmptySubsequences: false)
        let isDigits = { (s: Substring) in s.allSatisfy { $0.isASCII && $0.isNumber } }
        let exponentOK = exponent.isEmpty || {
            let e = exponent.dropFirst(), digits = e.hasPrefix("-") || e.hasPrefix("+") ? e.dropFirst() : e
            return !digits.isEmpty && isDigits(digits)
        }()
        return parts.count <= 2 && parts.allSatisfy(isDigits) && !parts.allSatisfy({ $0.isEmpty }) && exponentOK
    }
}

/// A plain scalar of a configuration: its text as written and its YAML 1.2 value (`YAMLInput.resolve`). A text key
/// (a path, a name) takes the text; every other key the value.
struct PlainScalar: CustomStringConvertible, CustomDebugStringConvertible {
    let text: String
    let value: Any
    var description: String { text }
    var debugDescription: String { text.debugDescription }
}

/// YAML's null (`key:` with nothing after it, `~`, `null`): a section whose keys are all commented out, or a key
/// without a value, which `Config` refuses naming the key and what it expects.
struct YAMLNull: CustomStringConvertible {
    var description: String { "no value" }
}
