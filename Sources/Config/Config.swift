import Foundation
import Support
import Yams

/// The type and allowed values of one configuration key.
public enum ConfigKind: Sendable {
    case int(ClosedRange<Int>)
    case double(ClosedRange<Double>)
    case bool
    case string(allowed: [String]?)
    case stringList
    /// Trial phases: a list of 1, 2, 3 or 4 (numbers or strings).
    case phaseList

    public var expected: String {
        switch self {
        case .int(let r): return "an integer in [\(r.lowerBound), \(r.upperBound)]"
        case .double(let r): return "a number in [\(r.lowerBound), \(r.upperBound)]"
        case .bool: return "true or false"
        case .string(let allowed): return allowed.map { "one of \($0.joined(separator: ", "))" } ?? "a string"
        case .stringList: return "a list of strings"
        case .phaseList: return "a list of distinct phases among 1, 2, 3, 4"
        }
    }
}

/// A resolved configuration value.
public enum ConfigValue: Equatable, Sendable, CustomStringConvertible {
    case int(Int), double(Double), bool(Bool), string(String), strings([String])
    public var description: String {
        switch self {
        case .int(let v): return "\(v)"
        case .double(let v): return "\(v)"
        case .bool(let v): return "\(v)"
        case .string(let v): return v
        case .strings(let v): return "[" + v.map(yamlQuote).joined(separator: ", ") + "]"     // one item or two, unmistakably
        }
    }
}

/// One documented key: `section.name`, its kind, its default and what it does.
public struct ConfigKey: Sendable {
    public let path: String
    public let kind: ConfigKind
    public let defaultValue: ConfigValue
    public let doc: String
}

/// A configuration: defaults from `ConfigSchema.keys`, overridden by a YAML file, overridden by
/// `--set key.path=value`. Unknown keys, wrong types and out-of-range values are InputErrors that name
/// the key and the allowed values.
public struct Config: Sendable {
    public private(set) var values: [String: ConfigValue]
    public private(set) var sourceFile: String?
    /// Whether `--set` overrides were applied on top of the file (messages say "(with --set)" only then).
    public private(set) var hasOverrides = false
    /// Keys that more than one `--set` gave, in order of first appearance: the last value applies (scripts layer
    /// their own --set over a user's), and commands say so.
    public private(set) var repeatedOverrides: [String] = []
    /// The keys `--set` gave, each once, in order of first appearance.
    public private(set) var overriddenKeys: [String] = []

    public init(file: String?, overrides: [String] = []) throws {
        values = Dictionary(uniqueKeysWithValues: ConfigSchema.keys.map { ($0.path, $0.defaultValue) })
        sourceFile = file
        hasOverrides = !overrides.isEmpty
        if let file {
            let data = try readRegularFile(file, what: "YAML configuration", limit: YAMLInput.maxBytes)
            if let node = try YAMLInput.parse(data, origin: file) {
                guard let map = node as? [(String, Any)] else { throw InputError(file: file, "expected a mapping of sections at the top level") }
                var given: Set<String> = []
                try apply(map, prefix: "", file: file, given: &given)
            }
        }
        var overridden = Set<String>()
        for o in overrides {
            guard let eq = o.firstIndex(of: "=") else {
                throw InputError("--set \(o): expected key.path=value")
            }
            let key = String(o[..<eq]).trimmingCharacters(in: .whitespaces)
            let raw = String(o[o.index(after: eq)...])
            guard !key.isEmpty else { throw InputError("--set \(o): expected key.path=value") }
            // The value is YAML (a number, true, [a, b], "quoted"); anything that does not parse as a scalar or a
            // flat list is taken as the literal string. A text key (a path, a name; a list of them as `a, b`) takes the
            // text as written unless it is quoted: YAML would cut `/tmp/run #1.store` at its comment and read `1e3` as 1000.0.
            var parsed: Any = raw
            let trimmed = raw.trimmingCharacters(in: .whitespaces)
            let isText: Bool = {
                switch ConfigSchema.key(key)?.kind {
                case .string, .stringList: return !trimmed.hasPrefix("[")     // `a, b` as written; `[a, b]` is YAML's (a list)
                default: return false
                }
            }()
            let isList = { if case .stringList? = ConfigSchema.key(key)?.kind { return true } else { return false } }()
            // A bare list is split at its commas and nothing else: an item that starts or ends with a quote
            // (`a.csv, "d,e.csv"`, also `"a.csv", "b.csv"`, which is no YAML scalar) would keep its quotes as characters
            // of the name, so the bracketed form, which reads them, is asked for (o'neil.csv is a name as it stands).
            let quotedItem = isList && !trimmed.hasPrefix("[") && trimmed.split(separator: ",").contains { item in
                let t = item.trimmingCharacters(in: .whitespaces)
                return ["\"", "'"].contains { t.hasPrefix($0) || t.hasSuffix($0) }
            }
            let yaml = isText && !trimmed.hasPrefix("\"") && !trimmed.hasPrefix("'") ? nil : try? YAMLInput.parse(Data(raw.utf8), origin: "--set \(key)")
            if quotedItem && !(yaml is String) {
                throw InputError("--set \(key)=\(trimmed.prefix(80)): quotes in a list without brackets are not read; write the list in brackets, as in YAML: \(key)=[a.csv, \"d,e.csv\"]")
            }
            if isText && !trimmed.hasPrefix("\"") && !trimmed.hasPrefix("'") {
                parsed = PlainScalar(text: trimmed, value: trimmed)       // as written (a plain scalar of a file)
            } else if let y = yaml,
               // (An empty list `[]` also casts to an empty mapping: it is a list here.)
               (y as? [Any]).map({ $0.isEmpty }) == true || !(y is [(String, Any)]) { parsed = y }
            // YAML's null (as in the file, where `key: ~` has no value) is not a value either.
            if ["", "~", "null", "Null", "NULL"].contains(trimmed) { parsed = YAMLNull() }
            try set(key, parsed, origin: "--set \(key)")
            if overridden.insert(key).inserted { overriddenKeys.append(key) } else if !repeatedOverrides.contains(key) { repeatedOverrides.append(key) }
        }
    }

    /// `given`: the keys this file set so far; a key given twice, once dotted (`train.epochs: 2`) and once nested
    /// (`train:` / `epochs: 3`), is refused as YAML's own duplicates are.
    private mutating func apply(_ map: [(String, Any)], prefix: String, file: String, given: inout Set<String>) throws {
        for (k, v) in map {
            let path = prefix.isEmpty ? k : prefix + "." + k
            let isKey = ConfigSchema.keys.contains(where: { $0.path == path })
            // A section with nothing under it (every key commented out) sets nothing, as `train: {}`.
            if !isKey && v is YAMLNull {
                guard ConfigSchema.keys.contains(where: { $0.path.hasPrefix(path + ".") }) else { throw unknown(path, origin: file) }
                continue
            }
            // A key of the schema takes its value as it is: an empty list `[]` also casts to an empty mapping.
            if !isKey, let sub = v as? [(String, Any)] {
                guard ConfigSchema.keys.contains(where: { $0.path.hasPrefix(path + ".") }) else {
                    throw unknown(path, origin: file)
                }
                // `train: []` casts to an empty mapping as well; a section is a mapping of its keys.
                guard type(of: v) != [Any].self else {
                    throw InputError("\(file): \(path) is a section: expected a mapping of its keys, not a list")
                }
                try apply(sub, prefix: path, file: file, given: &given)
            } else {
                guard given.insert(path).inserted else {
                    throw InputError("\(file): key \(path) appears twice (once dotted, once nested under its section)")
                }
                try set(path, v, origin: "\(file): key \(path)")
            }
        }
    }

    private func unknown(_ path: String, origin: String) -> InputError {
        let section = path.split(separator: ".").first.map(String.init) ?? path
        let known = ConfigSchema.keys.filter { $0.path.hasPrefix(section + ".") }.map(\.path)
        let hint = known.isEmpty ? "sections: \(Set(ConfigSchema.keys.map { String($0.path.split(separator: ".")[0]) }).sorted().joined(separator: ", "))"
                                 : "keys of \(section): \(known.joined(separator: ", "))"
        if ConfigSchema.keys.contains(where: { $0.path.hasPrefix(path + ".") }) {
            return InputError("\(origin): \(path) is a section, not a key; set one of its keys (\(hint))")
        }
        return InputError("\(origin): unknown key \(path) (\(hint))")
    }

    /// Sets one key from the text of a YAML (or JSON) value, as a file's `key: text` would.
    public mutating func set(_ path: String, yamlText: String, origin: String) throws {
        guard let value = try YAMLInput.parse(Data(yamlText.utf8), origin: origin) else { throw InputError("\(origin): \(path) has no value") }
        try set(path, value, origin: origin)
    }

    /// Sets one key from a YAML scalar or list, checking type and range.
    public mutating func set(_ path: String, _ given: Any, origin: String) throws {
        guard let spec = ConfigSchema.keys.first(where: { $0.path == path }) else { throw unknown(path, origin: origin) }
        if given is YAMLNull {
            // A shell turns `--set key=""` into `key=`: say how the quotes get through.
            let quoted = origin.hasPrefix("--set") ? " (quoted for the shell: --set '\(path)=\"\"')" : ""
            let empty = {
                switch spec.kind {
                case .stringList: return "; [] is the empty list"
                case .string(nil) where path == "data.exclude_file": return "; \"\" is the empty string, none\(quoted)"     // the one text key that takes it
                default: return ""
                }
            }()
            throw InputError("\(origin.hasSuffix(path) ? origin : "\(origin): \(path)") has no value (expected \(spec.kind.expected)\(empty))")
        }
        // A plain scalar is text to a text key and its YAML 1.2 value to any other (`PlainScalar`); errors show the text.
        let raw = (given as? PlainScalar)?.value ?? given
        func textOf(_ x: Any) -> String? { (x as? PlainScalar)?.text ?? (x as? String) }
        func bad() -> InputError {
            let shown = (raw as? [Any])?.isEmpty == true ? "[]"
                : (raw as? [(String, Any)]).map { "a mapping (\($0.map(\.0).joined(separator: ", ")))" }
                ?? (raw as? [Any]).map { "[" + $0.map { textOf($0) ?? "\($0)" }.joined(separator: ", ") + "]" } ?? "\(given)"
            return .invalid(path, shown, expected: spec.kind.expected, in: origin)
        }
        // Text values are paths and names: one line, no control characters (a NUL would cut a path short at the
        // file system, a line break would not survive the run's config.yaml).
        func text(_ s: String) throws -> String {
            guard !s.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
                throw InputError("\(origin): \(path) = \(s.debugDescription) holds a control character (a line break, tab or NUL); expected one line of text")
            }
            return s
        }
        // Text that starts a list but did not parse as one (`[a, b` without its closing bracket) is not a list of
        // names with brackets; a name may still end with one (`x[1]`).
        func unbracketed(_ s: String) throws -> String {
            guard !s.trimmingCharacters(in: .whitespaces).hasPrefix("[") else { throw bad() }
            return s
        }
        switch spec.kind {
        case .int(let range):
            // A quoted number ("3") is read as its text would be unquoted; a plain text that is no number stays refused.
            var v: Int? = raw as? Int
            if v == nil, let s = given as? String { let r = YAMLInput.resolve(s); v = r as? Int ?? (r as? Double).flatMap { Int(exactly: $0) } }
            if v == nil, let d = raw as? Double, d == d.rounded(), abs(d) < 1e15 { v = Int(d) }
            guard let v, range.contains(v) else { throw bad() }
            values[path] = .int(v)
        case .double(let range):
            var v: Double? = raw as? Double
            if v == nil, let i = raw as? Int { v = Double(i) }
            // The YAML 1.2 number grammar (not Swift's, which reads 0x1p-3); 1e-400 is kept to be refused below.
            if v == nil, let s = raw as? String, YAMLInput.isDecimalNumber(s) { v = Double(s.hasPrefix("+") ? String(s.dropFirst()) : s) }
            guard let v, v.isFinite, range.contains(v) else { throw bad() }
            // The model and optimizer compute in 32-bit floats: a value that rounds to 0 there (optimizer.eps = 1e-300),
            // or already in a Double (1e-400, given as text), or beyond its range would not be the value given. Zero is
            // told by its bits: the process flushes subnormals to zero (`Kernels.setFlushDenormals`), so a subnormal
            // Double (1e-308) compares equal to 0 and would pass as one.
            guard v.bitPattern << 1 == 0 ? !((raw as? String).map(YAMLInput.writesNonZero) ?? false) : Float(v).isNormal else {
                throw InputError.invalid(path, given, expected: "\(spec.kind.expected), and 0 or a magnitude within 32-bit floats, 1.2e-38 to 3.4e38: "
                                        + "the model computes in fp32", in: origin)
            }
            values[path] = .double(v == 0 ? 0 : v)     // -0.0 is 0 (echoed, recorded and compared as 0)
        case .bool:
            var v: Bool? = raw as? Bool
            if v == nil, let s = raw as? String { v = ["true": true, "false": false][s.lowercased()] }
            guard let v else { throw bad() }
            values[path] = .bool(v)
        case .string(let allowed):
            guard !(raw is [Any]), !(raw is Bool) || allowed == nil else { throw bad() }
            let s = try text(textOf(given) ?? "\(raw)")
            if let allowed, !allowed.contains(s) { throw bad() }
            values[path] = .string(s)
        case .stringList:
            if let list = raw as? [Any] {
                let items = list.compactMap(textOf)
                guard items.count == list.count else { throw bad() }
                values[path] = .strings(try items.map(text))
            } else if let one = given as? String {
                // One quoted name: one item, commas and all (files: "d,e.csv"); "" is no name: the empty list.
                values[path] = .strings(one.isEmpty ? [] : [try text(unbracketed(one))])
            } else if let s = textOf(given) {
                // Every item, empty ones too (`a.csv,,b.csv`), which the specification refuses by name; they had been dropped.
                values[path] = .strings(try unbracketed(s).split(separator: ",", omittingEmptySubsequences: false).map { try text($0.trimmingCharacters(in: .whitespaces)) })
            } else { throw bad() }
        case .phaseList:
            let items: [Any] = try (raw as? [Any])?.map { ($0 as? PlainScalar)?.value ?? $0 }
                ?? ((raw as? String).map { try unbracketed($0).split(separator: ",").map { YAMLInput.resolve($0.trimmingCharacters(in: .whitespaces)) } } ?? [raw])
            let phases = items.map { "\($0)" }
            guard items.allSatisfy({ $0 is String || $0 is Int }), phases.allSatisfy({ ["1", "2", "3", "4"].contains($0) }),
                  Set(phases).count == phases.count else { throw bad() }
            values[path] = .strings(phases)
        }
    }

    func int(_ path: String) -> Int { if case .int(let v) = values[path]! { return v }; fatalError(path) }
    func double(_ path: String) -> Double { if case .double(let v) = values[path]! { return v }; fatalError(path) }
    func bool(_ path: String) -> Bool { if case .bool(let v) = values[path]! { return v }; fatalError(path) }
    func string(_ path: String) -> String { if case .string(let v) = values[path]! { return v }; fatalError(path) }
    func strings(_ path: String) -> [String] { if case .strings(let v) = values[path]! { return v }; fatalError(path) }

    /// The resolved configuration as YAML, sections in schema order.
    public var yaml: String {
        var out = "# resolved cladmop configuration\n"
        var section = ""
        for key in ConfigSchema.keys {
            let parts = key.path.split(separator: ".", maxSplits: 1).map(String.init)
            if parts[0] != section { section = parts[0]; out += "\(section):\n" }
            let v = values[key.path]!
            switch v {
            case .string(let s): out += "  \(parts[1]): \(yamlQuote(s))\n"
            case .strings(let l):
                // Phases are numbers ([1, 2]: a probe saw data.sct_phases written as ["1"]); names are quoted.
                if case .phaseList = key.kind { out += "  \(parts[1]): [\(l.joined(separator: ", "))]\n"; continue }
                out += "  \(parts[1]): [\(l.map(yamlQuote).joined(separator: ", "))]\n"
            default: out += "  \(parts[1]): \(v)\n"
            }
        }
        return out
    }
}

func yamlQuote(_ s: String) -> String {
    "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
}
