import NN

/// Atom-level SMILES tokenization (the regular expression of Schwaller et al. 2019, written out):
/// bracket atoms `[...]`, two-letter elements Cl and Br, organic-subset atoms B C N O P S F I,
/// aromatic atoms b c n o p s, bonds - = # $ : / \ ., branches ( ), ring closures 0-9 and %nn,
/// and * . Anything else, or unbalanced brackets or parentheses, is an error.
public func tokenizeSMILES(_ smiles: String) throws -> [String] {
    let s = Array(smiles.unicodeScalars)
    var tokens: [String] = []
    var depth = 0
    var i = 0
    while i < s.count {
        let c = s[i]
        switch c {
        case "[":
            guard let close = s[i...].firstIndex(of: "]") else {
                throw SMILESError(message: "unclosed '[' at character \(i + 1)")
            }
            if s[(i + 1)..<close].contains("[") { throw SMILESError(message: "nested '[' at character \(i + 1)") }
            tokens.append(String(String.UnicodeScalarView(s[i...close]))); i = close + 1
        case "]": throw SMILESError(message: "']' without '[' at character \(i + 1)")
        case "C" where i + 1 < s.count && s[i + 1] == "l", "B" where i + 1 < s.count && s[i + 1] == "r":
            tokens.append(String(String.UnicodeScalarView(s[i...(i + 1)]))); i += 2
        case "%":
            guard i + 2 < s.count, s[i + 1].properties.numericType != nil, s[i + 2].properties.numericType != nil else {
                throw SMILESError(message: "'%' must be followed by two digits at character \(i + 1)")
            }
            tokens.append(String(String.UnicodeScalarView(s[i...(i + 2)]))); i += 3
        case "(":
            depth += 1; tokens.append("("); i += 1
        case ")":
            depth -= 1
            if depth < 0 { throw SMILESError(message: "')' without '(' at character \(i + 1)") }
            tokens.append(")"); i += 1
        case "B", "C", "N", "O", "P", "S", "F", "I", "b", "c", "n", "o", "p", "s",
             "-", "=", "#", "$", ":", "/", "\\", ".", "*", "+", "@", "~", "?", ">",
             "0", "1", "2", "3", "4", "5", "6", "7", "8", "9":
            tokens.append(String(c)); i += 1
        default:
            throw SMILESError(message: "unexpected character '\(c)' at character \(i + 1)")
        }
    }
    if depth != 0 { throw SMILESError(message: "\(depth) '(' never closed") }
    return tokens
}

public struct SMILESError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// Token vocabulary with PAD = 0 and UNK = 1, built from a corpus in first-seen order (deterministic).
public struct Vocabulary: Codable, Sendable, Equatable {
    public static let pad: Int32 = 0, unk: Int32 = 1
    public private(set) var tokens: [String] = ["<pad>", "<unk>"]
    private var index: [String: Int32] = ["<pad>": 0, "<unk>": 1]
    public init() {}
    public init(tokens: [String]) { for t in tokens { add(t) } }
    public var count: Int { tokens.count }
    public mutating func add(_ t: String) {
        if index[t] == nil { index[t] = Int32(tokens.count); tokens.append(t) }
    }
    public func id(_ t: String) -> Int32 { index[t] ?? Self.unk }
    enum CodingKeys: String, CodingKey { case tokens }
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let list = try c.decode([String].self, forKey: .tokens)
        self.init()
        for t in list.dropFirst(2) { add(t) }
    }
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(tokens, forKey: .tokens)
    }
}
