import Support
import Foundation
import NN

/// BERT tokenization: basic tokenization (clean-up, CJK splitting, lower-casing and accent stripping,
/// punctuation splitting) then greedy longest-match WordPiece over `vocab.txt`, wrapped in [CLS] ... [SEP]
/// and truncated to `maxLength` ids, as HuggingFace's BertTokenizer does.
public struct WordPieceTokenizer {
    public let vocab: [String: Int32]
    public let lowercase: Bool
    public let stripAccents: Bool
    public let maxLength: Int
    /// Lines of vocab.txt: every id is below this (the word-embedding table needs at least this many rows).
    public let size: Int
    public let cls: Int32, sep: Int32, unk: Int32, pad: Int32

    /// The names of the four special tokens in vocab.txt (HuggingFace's cls_token, sep_token, unk_token, pad_token).
    public struct SpecialTokens: Sendable, Equatable {
        public var cls = "[CLS]", sep = "[SEP]", unk = "[UNK]", pad = "[PAD]"
        public init() {}
        public init(cls: String, sep: String, unk: String, pad: String) { self.cls = cls; self.sep = sep; self.unk = unk; self.pad = pad }
    }
    let maxCharsPerWord = 100

    /// Reads `vocab.txt`: one token per line, its id the line number - 1 (LF, CR LF or CR line endings, as
    /// Python's readlines reads them); a token listed twice has the id of its last line, as HuggingFace's
    /// `load_vocab` (and the fast tokenizer's `WordPiece::read_file`) give it. A FIFO, directory or device is refused before it is opened.
    /// `maxLength` counts [CLS] and [SEP], so it is at least 2.
    /// `specials`: the vocabulary's names of the start, end, unknown and padding tokens (BERT's by default; an MPNet
    /// vocabulary names them <s>, </s>, [UNK], <pad> in its tokenizer_config.json).
    public init(vocabPath: String, lowercase: Bool, stripAccents: Bool? = nil, maxLength: Int,
                specials: SpecialTokens = SpecialTokens()) throws {
        guard maxLength >= 2 else {
            throw InputError.invalid("maximum tokens per text", maxLength, expected: "at least 2: [CLS] and [SEP]")
        }
        let lines = try readTextLines(vocabPath, what: "WordPiece vocabulary (vocab.txt)", limit: 256 << 20).lines
        guard lines.count < Int(Int32.max) else { throw InputError(file: vocabPath, "has \(lines.count) lines; a vocabulary has fewer than 2^31 tokens") }
        var vocab: [String: Int32] = [:]
        for (id, token) in lines.enumerated() { vocab[token] = Int32(id) }
        size = lines.count
        func special(_ s: String, _ key: String) throws -> Int32 {
            guard let v = vocab[s] else {
                throw InputError(file: vocabPath, "vocabulary lacks \(s) (the \(key); tokenizer_config.json beside it may name another)")
            }
            return v
        }
        self.vocab = vocab
        self.lowercase = lowercase
        self.stripAccents = stripAccents ?? lowercase   // BERT: accents stripped when lower-casing unless set
        self.maxLength = maxLength
        cls = try special(specials.cls, "cls_token"); sep = try special(specials.sep, "sep_token")
        unk = try special(specials.unk, "unk_token"); pad = try special(specials.pad, "pad_token")
    }

    /// Token ids of one text: [CLS] wordpieces... [SEP], at most `maxLength`.
    public func encode(_ text: String) -> [Int32] {
        var ids: [Int32] = [cls]
        let budget = maxLength - 2
        outer: for word in basicTokens(text) {
            for piece in wordPieces(word) {
                if ids.count - 1 >= budget { break outer }
                ids.append(piece)
            }
        }
        ids.append(sep)
        return ids
    }

    /// The number of word pieces of `text` without the length limit ([CLS] and [SEP] not counted): 0 for a text of no
    /// word (empty, spaces, or only characters the tokenizer drops).
    public func wordPieceCount(_ text: String) -> Int { basicTokens(text).reduce(0) { $0 + wordPieces($1).count } }

    /// Basic tokenization into words and punctuation marks.
    func basicTokens(_ text: String) -> [String] {
        var cleaned = String.UnicodeScalarView()
        for s in text.unicodeScalars {
            let v = s.value
            if v == 0 || v == 0xFFFD || (isControl(s)) { continue }
            if isWhitespace(s) { cleaned.append(" ") }
            else if isCJK(v) { cleaned.append(" "); cleaned.append(s); cleaned.append(" ") }
            else { cleaned.append(s) }
        }
        var out: [String] = []
        for raw in String(cleaned).split(separator: " ", omittingEmptySubsequences: true) {
            var word = String(raw)
            if lowercase { word = word.lowercased() }
            if stripAccents {
                word = String(String.UnicodeScalarView(word.decomposedStringWithCanonicalMapping.unicodeScalars.filter {
                    $0.properties.generalCategory != .nonspacingMark }))
            }
            // Split off every punctuation character as its own token.
            var current = String.UnicodeScalarView()
            for s in word.unicodeScalars {
                if isPunctuation(s) {
                    if !current.isEmpty { out.append(String(current)); current = String.UnicodeScalarView() }
                    out.append(String(s))
                } else { current.append(s) }
            }
            if !current.isEmpty { out.append(String(current)) }
        }
        return out
    }

    /// Greedy longest-match-first WordPiece; a word with no segmentation becomes [UNK].
    func wordPieces(_ word: String) -> [Int32] {
        let scalars = Array(word.unicodeScalars)
        if scalars.count > maxCharsPerWord { return [unk] }
        var pieces: [Int32] = []
        var start = 0
        while start < scalars.count {
            var end = scalars.count
            var found: Int32? = nil
            while start < end {
                var sub = String(String.UnicodeScalarView(scalars[start..<end]))
                if start > 0 { sub = "##" + sub }
                if let id = vocab[sub] { found = id; break }
                end -= 1
            }
            guard let id = found else { return [unk] }
            pieces.append(id)
            start = end
        }
        return pieces
    }

    func isWhitespace(_ s: Unicode.Scalar) -> Bool {
        s == " " || s == "\t" || s == "\n" || s == "\r" || s.properties.generalCategory == .spaceSeparator
    }
    func isControl(_ s: Unicode.Scalar) -> Bool {
        if s == "\t" || s == "\n" || s == "\r" { return false }
        switch s.properties.generalCategory {
        case .control, .format: return true
        default: return false
        }
    }
    func isPunctuation(_ s: Unicode.Scalar) -> Bool {
        let v = s.value
        if (33...47).contains(v) || (58...64).contains(v) || (91...96).contains(v) || (123...126).contains(v) { return true }
        switch s.properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
             .initialPunctuation, .finalPunctuation, .otherPunctuation: return true
        default: return false
        }
    }
    func isCJK(_ v: UInt32) -> Bool {
        (0x4E00...0x9FFF).contains(v) || (0x3400...0x4DBF).contains(v) || (0x20000...0x2A6DF).contains(v) ||
        (0x2A700...0x2B73F).contains(v) || (0x2B740...0x2B81F).contains(v) || (0x2B820...0x2CEAF).contains(v) ||
        (0xF900...0xFAFF).contains(v) || (0x2F800...0x2FA1F).contains(v)
    }
}
