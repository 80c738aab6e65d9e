import Foundation
import NN
import TextEncoder
import XCTest

/// A text-encoder folder is validated before any weight is allocated: every config.json value that sizes or
/// divides (errors name config.json and the key), the vocabulary against the word-embedding rows, every
/// tensor's shape against the config, the maximum tokens per text against max_position_embeddings; a FIFO,
/// directory or device in the folder is refused before it is opened.
final class ModelFolderValidationTests: XCTestCase {
    static let realConfig: [String: Any] = [
        "architectures": ["BertModel"], "hidden_act": "gelu", "hidden_size": 384, "intermediate_size": 1536,
        "layer_norm_eps": 1e-12, "max_position_embeddings": 512, "model_type": "bert", "num_attention_heads": 12,
        "num_hidden_layers": 6, "type_vocab_size": 2, "vocab_size": 30522,
    ]
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "cladmop-model-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    var realModel: String? {
        FileManager.default.fileExists(atPath: defaultModelDir + "/model.safetensors") ? defaultModelDir : nil
    }

    /// A folder with `config` as config.json and the real vocabulary and weights (linked), or tiny stand-ins
    /// when `real` is false (for errors found before those files are read).
    func folder(_ name: String, config: [String: Any], real: Bool, vocab: String? = nil) throws -> String {
        let path = dir + "/" + name
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try JSONSerialization.data(withJSONObject: config, options: [.sortedKeys]).write(to: URL(fileURLWithPath: path + "/config.json"))
        if real, let model = realModel {
            if let vocab { try vocab.write(toFile: path + "/vocab.txt", atomically: true, encoding: .utf8) }
            else { try FileManager.default.createSymbolicLink(atPath: path + "/vocab.txt", withDestinationPath: model + "/vocab.txt") }
            try FileManager.default.createSymbolicLink(atPath: path + "/model.safetensors", withDestinationPath: model + "/model.safetensors")
        } else {
            try (vocab ?? "[PAD]\n[UNK]\n[CLS]\n[SEP]\n").write(toFile: path + "/vocab.txt", atomically: true, encoding: .utf8)
            _ = FileManager.default.createFile(atPath: path + "/model.safetensors", contents: Data([0, 0, 0, 0, 0, 0, 0, 0]))
        }
        return path
    }

    func config(_ changes: [String: Any]) -> [String: Any] { Self.realConfig.merging(changes) { $1 } }

    func expectError(_ dir: String, maxLength: Int = 256, _ expected: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try BertEncoder(modelDir: dir, maxLength: maxLength), expected, file: file, line: line) { error in
            XCTAssertEqual(String(describing: type(of: error)), "InputError", "\(error)", file: file, line: line)
            XCTAssertTrue("\(error)".contains(expected), "expected '\(expected)' in: \(error)", file: file, line: line)
        }
    }

    /// all-MiniLM-L6-v2's 6 layers under a config.json that says 5 (the encoder would have run without the last
    /// one), or another position embedding or model type (it would have run as BERT): refused, naming the file.
    func testAConfigThatDoesNotDescribeTheWeightsIsRefused() throws {
        guard realModel != nil else { XCTFail("\(defaultModelDir) is missing: run Launch/setup"); return }
        expectError(try folder("five", config: config(["num_hidden_layers": 5]), real: true),
                    "model.safetensors: holds encoder.layer.5 but config.json says num_hidden_layers = 5")
        expectError(try folder("relative", config: config(["position_embedding_type": "relative_key"]), real: true),
                    "config.json: position_embedding_type = relative_key is not supported (expected absolute)")
        expectError(try folder("gpt2", config: config(["model_type": "gpt2"]), real: true),
                    "config.json: model_type = gpt2 is not supported")
        XCTAssertNoThrow(try BertEncoder(modelDir: try folder("six", config: config([:]), real: true)))
    }

    func testEveryConfigValueThatSizesOrDividesIsChecked() throws {
        let cases: [(String, [String: Any], String)] = [
            ("heads-zero", ["num_attention_heads": 0], "config.json: num_attention_heads = 0 is invalid (expected an integer in [1, 384], at most hidden_size = 384)"),
            ("heads-negative", ["num_attention_heads": -12], "config.json: num_attention_heads = -12 is invalid"),
            ("heads-not-dividing", ["num_attention_heads": 5], "config.json: num_attention_heads = 5 does not divide hidden_size = 384"),
            ("heads-over-hidden", ["num_attention_heads": 768], "config.json: num_attention_heads = 768 is invalid"),
            ("hidden-zero", ["hidden_size": 0], "config.json: hidden_size = 0 is invalid (expected an integer in [1, 4096]"),
            ("hidden-huge", ["hidden_size": 1 << 40], "config.json: hidden_size = 1099511627776 is invalid"),
            // Wider than the model takes (its checkpoints would be refused on load after a whole featurization and run).
            ("hidden-wider-than-the-model", ["hidden_size": 5120], "config.json: hidden_size = 5120 is invalid (expected an integer in [1, 4096]; the model takes"),
            ("intermediate-zero", ["intermediate_size": 0], "config.json: intermediate_size = 0 is invalid"),
            ("layers-two", ["num_hidden_layers": 2], "config.json: num_hidden_layers = 2 is invalid (expected an integer in [3, 1024]; the coarse, medium and fine levels"),
            ("layers-negative", ["num_hidden_layers": -1], "config.json: num_hidden_layers = -1 is invalid"),
            ("positions-zero", ["max_position_embeddings": 0], "config.json: max_position_embeddings = 0 is invalid"),
            ("vocab-zero", ["vocab_size": 0], "config.json: vocab_size = 0 is invalid"),
            ("types-zero", ["type_vocab_size": 0], "config.json: type_vocab_size = 0 is invalid"),
            ("eps-negative", ["layer_norm_eps": -1], "config.json: layer_norm_eps = -1.0 is invalid (expected a finite number > 0"),
            ("eps-zero", ["layer_norm_eps": 0], "config.json: layer_norm_eps = 0.0 is invalid"),
            ("eps-below-float", ["layer_norm_eps": 1e-50], "config.json: layer_norm_eps = 1e-50 is invalid"),
            ("eps-above-float", ["layer_norm_eps": 1e300], "config.json: layer_norm_eps = 1e+300 is invalid"),
            ("act", ["hidden_act": "relu"], "config.json: hidden_act = relu is not supported (expected gelu)"),
            ("hidden-string", ["hidden_size": "384"], "config.json: hidden_size = \"384\" is invalid (expected an integer)"),
            ("hidden-fraction", ["hidden_size": 384.5], "config.json: hidden_size = 384.5 is invalid (expected an integer)"),
            ("heads-huge", ["num_attention_heads": 1e30], "config.json: num_attention_heads = 1e+30 is invalid (expected an integer)"),
            ("eps-string", ["layer_norm_eps": "small"], "config.json: layer_norm_eps = \"small\" is invalid (expected a number)"),
        ]
        for (name, change, expected) in cases {
            expectError(try folder(name, config: config(change), real: false), expected)
        }
        var missing = Self.realConfig
        missing["num_attention_heads"] = nil
        expectError(try folder("missing-key", config: missing, real: false), "config.json: not a BERT or MPNet config: key num_attention_heads is missing")
        let notJSON = try folder("not-json", config: [:], real: false)
        try "{ hidden_size: 384".write(toFile: notJSON + "/config.json", atomically: true, encoding: .utf8)
        expectError(notJSON, "config.json: not a BERT or MPNet config: not a JSON object")
    }

    func testMaxTokensIsPositiveAndWithinThePositionTable() throws {
        let d = try folder("max", config: Self.realConfig, real: false)
        for bad in [0, -5, 1] {
            expectError(d, maxLength: bad, "maximum tokens per text (--max-tokens, encoder.max_tokens) = \(bad) is invalid (expected at least 2: [CLS] and [SEP])")
        }
        expectError(d, maxLength: 513, "config.json: max_position_embeddings = 512 is below the maximum tokens per text (--max-tokens, encoder.max_tokens) = 513")
        XCTAssertThrowsError(try WordPieceTokenizer(vocabPath: d + "/vocab.txt", lowercase: true, maxLength: 0)) {
            XCTAssertTrue("\($0)".contains("expected at least 2"), "\($0)")
        }
        let tokenizer = try WordPieceTokenizer(vocabPath: d + "/vocab.txt", lowercase: true, maxLength: 2)
        XCTAssertEqual(tokenizer.encode("anything at all"), [tokenizer.cls, tokenizer.sep])
    }

    /// A token listed twice takes the id of its last line: HuggingFace's `load_vocab` fills a dict line by line
    /// (`vocab[token] = index`), and the fast tokenizer's `WordPiece::read_file` inserts into a map the same way.
    func testATokenListedTwiceHasTheIdOfItsLastLine() throws {
        let d = try folder("vocab-duplicate", config: Self.realConfig, real: false,
                           vocab: "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nlung\ncancer\nlung\n")
        let tokenizer = try WordPieceTokenizer(vocabPath: d + "/vocab.txt", lowercase: true, maxLength: 16)
        XCTAssertEqual(tokenizer.size, 8)
        XCTAssertEqual(tokenizer.vocab["lung"], 7)
        XCTAssertEqual(tokenizer.encode("Lung cancer"), [2, 7, 6, 3])
    }

    func testTensorShapesAndVocabularyAreCheckedAgainstTheConfig() throws {
        guard realModel != nil else { throw XCTSkip("\(defaultModelDir) is missing: run Launch/setup") }
        let cases: [(String, [String: Any], String)] = [
            ("more-layers", ["num_hidden_layers": 7], "model.safetensors: lacks tensor encoder.layer.6.attention.self.query.weight (config.json: num_hidden_layers = 7, hidden_size = 384)"),
            ("positions", ["max_position_embeddings": 1024], "model.safetensors: tensor embeddings.position_embeddings.weight has shape [512, 384]; config.json (max_position_embeddings, hidden_size) expects [1024, 384]"),
            ("huge-vocab", ["vocab_size": 1 << 24], "model.safetensors: tensor embeddings.word_embeddings.weight has shape [30522, 384]; config.json (vocab_size, hidden_size) expects [16777216, 384]"),
            ("hidden", ["hidden_size": 768], "model.safetensors: tensor embeddings.word_embeddings.weight has shape [30522, 384]; config.json (vocab_size, hidden_size) expects [30522, 768]"),
            ("intermediate", ["intermediate_size": 1024], "model.safetensors: tensor encoder.layer.0.intermediate.dense.weight has shape [1536, 384]; config.json (intermediate_size, hidden_size) expects [1024, 384]"),
            ("types", ["type_vocab_size": 3], "model.safetensors: tensor embeddings.token_type_embeddings.weight has shape [2, 384]; config.json (type_vocab_size, hidden_size) expects [3, 384]"),
        ]
        for (name, change, expected) in cases {
            expectError(try folder(name, config: config(change), real: true), expected)
        }
        // More vocabulary lines than word-embedding rows: ids past the table would be read.
        let vocab = try String(contentsOfFile: defaultModelDir + "/vocab.txt", encoding: .utf8) + "extra1\nextra2\n"
        expectError(try folder("vocab-over", config: Self.realConfig, real: true, vocab: vocab),
                    "vocab.txt: has 30524 tokens but the word-embedding table of model.safetensors has 30522 rows (config.json vocab_size); expected at most one token per row")
        // The real folder's files, with CR LF line endings in vocab.txt, load and tokenize alike.
        let crlf = try folder("vocab-crlf", config: Self.realConfig, real: true,
                              vocab: try String(contentsOfFile: defaultModelDir + "/vocab.txt", encoding: .utf8).replacingOccurrences(of: "\n", with: "\r\n"))
        let a = try WordPieceTokenizer(vocabPath: defaultModelDir + "/vocab.txt", lowercase: true, maxLength: 64)
        let b = try WordPieceTokenizer(vocabPath: crlf + "/vocab.txt", lowercase: true, maxLength: 64)
        XCTAssertEqual(a.size, 30522)
        XCTAssertEqual(b.size, 30522)
        let text = "Histological diagnosis of metastatic non-small cell lung cancer"
        XCTAssertEqual(a.encode(text), b.encode(text))
    }

    /// A feature store records the encoder's `identity` (folder name, config, vocabulary, safetensors header) and its
    /// `weightsChecksum` (the whole model.safetensors): a folder of the same name, config and vocabulary whose weights
    /// differ in the last byte of the payload (a fine-tuned encoder saved over the same shapes) has the same identity
    /// and another weights checksum; an exact copy has both the same.
    func testTheWeightsChecksumTellsApartEncodersOfTheSameShapes() throws {
        guard let model = realModel else { XCTFail("\(defaultModelDir) is missing: run Launch/setup"); return }
        var ids: [(identity: String, weights: String)] = []
        for (parent, flip) in [("same", false), ("copy", false), ("edited", true)] {
            let folder = dir + "/" + parent + "/encoder"
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            for f in ["config.json", "vocab.txt"] { try FileManager.default.createSymbolicLink(atPath: folder + "/" + f, withDestinationPath: model + "/" + f) }
            var weights = try Data(contentsOf: URL(fileURLWithPath: model + "/model.safetensors"))
            if flip { weights[weights.count - 1] ^= 0x01 }
            try weights.write(to: URL(fileURLWithPath: folder + "/model.safetensors"))
            ids.append((try BertEncoder.identity(modelDir: folder), try BertEncoder.weightsChecksum(modelDir: folder)))
        }
        XCTAssertEqual(ids[0].identity, ids[1].identity)
        XCTAssertEqual(ids[0].weights, ids[1].weights)
        XCTAssertEqual(ids[0].identity, ids[2].identity)
        XCTAssertNotEqual(ids[0].weights, ids[2].weights)
        XCTAssertEqual(try BertEncoder(modelDir: dir + "/edited/encoder").weightsChecksum, ids[2].weights)
    }

    /// Tokenizer settings (tokenizer_config.json) other than the family's defaults make other tokens from the same
    /// texts: they are part of the identity, so a store made before them is stale (a ninth probe: a BERT's were not,
    /// and `featurize --skip-if-current` called such a store up to date). The defaults, written out or left out, add
    /// nothing: the identity of all-MiniLM-L6-v2 (whose tokenizer_config.json states them) is the one stores and
    /// checkpoints made before recorded. A dangling link is refused (it was read as no file: the defaults).
    func testTokenizerSettingsOtherThanTheDefaultsArePartOfTheIdentity() throws {
        guard let model = realModel else { XCTFail("\(defaultModelDir) is missing: run Launch/setup"); return }
        /// DIR/name/encoder: `source`'s config, vocabulary and weights (linked), `tokenizerConfig` as tokenizer_config.json.
        func identity(_ name: String, _ tokenizerConfig: String?, of source: String? = nil) throws -> String {
            let folder = dir + "/" + name + "/encoder"
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            for f in ["config.json", "vocab.txt", "model.safetensors"] {
                try FileManager.default.createSymbolicLink(atPath: folder + "/" + f, withDestinationPath: (source ?? model) + "/" + f)
            }
            if let tokenizerConfig { try tokenizerConfig.write(toFile: folder + "/tokenizer_config.json", atomically: true, encoding: .utf8) }
            return try BertEncoder.identity(modelDir: folder)
        }
        let none = try identity("none", nil)
        XCTAssertEqual(try identity("stated", try String(contentsOfFile: model + "/tokenizer_config.json", encoding: .utf8)), none)
        XCTAssertEqual(try identity("defaults", #"{"do_lower_case": true, "cls_token": {"content": "[CLS]"}}"#), none)
        let cased = try identity("cased", #"{"do_lower_case": false}"#)
        XCTAssertNotEqual(cased, none)
        let cls = try identity("cls", #"{"cls_token": "[SEP]"}"#)
        XCTAssertNotEqual(cls, none)
        XCTAssertNotEqual(cls, cased)
        XCTAssertEqual(String(none.split(separator: "@").first!), "encoder")
        // The identity that stores and checkpoints made before recorded (Tests/Fixtures/torch_loader's among them).
        XCTAssertEqual(try BertEncoder.identity(modelDir: model), "all-MiniLM-L6-v2@d18219381cbcbf83")
        // An MPNet's defaults are MPNetTokenizer's: its own tokenizer_config.json (<s>, </s>, [UNK], <pad>) or none
        // give one identity, BERT's [CLS] another.
        let tinyMPNet = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().path + "/Fixtures/tiny_mpnet"
        let mpnetNone = try identity("mpnet-none", nil, of: tinyMPNet)
        XCTAssertEqual(try identity("mpnet-own", try String(contentsOfFile: tinyMPNet + "/tokenizer_config.json", encoding: .utf8), of: tinyMPNet), mpnetNone)
        XCTAssertNotEqual(try identity("mpnet-bert-tokens", #"{"cls_token": "[CLS]", "sep_token": "[SEP]"}"#, of: tinyMPNet), mpnetNone)
        // Featurizing tokenizes the same way the identity says: the cased tokenizer keeps capitals apart.
        let lower = try BertEncoder(modelDir: dir + "/none/encoder", maxLength: 16), upper = try BertEncoder(modelDir: dir + "/cased/encoder", maxLength: 16)
        XCTAssertNotEqual(lower.tokenizer.encode("Adults With Asthma"), upper.tokenizer.encode("Adults With Asthma"))
        let dangling = dir + "/dangling/encoder"
        _ = try identity("dangling", nil)
        try FileManager.default.createSymbolicLink(atPath: dangling + "/tokenizer_config.json", withDestinationPath: dir + "/nowhere.json")
        XCTAssertThrowsError(try BertEncoder.identity(modelDir: dangling)) {
            XCTAssertTrue("\($0)".contains("tokenizer_config.json: is a symbolic link to \(dir)/nowhere.json, which does not exist"), "\($0)")
        }
        expectError(dangling, "tokenizer_config.json: is a symbolic link")
    }

    func testAFIFOOrDirectoryInTheFolderIsRefusedBeforeItIsOpened() throws {
        for (file, what) in [("config.json", "the encoder config.json"), ("vocab.txt", "the WordPiece vocabulary (vocab.txt)"),
                             ("model.safetensors", "the encoder weights (model.safetensors)")] {
            let d = try folder("fifo-" + file, config: Self.realConfig, real: false)
            try FileManager.default.removeItem(atPath: d + "/" + file)
            XCTAssertEqual(mkfifo(d + "/" + file, 0o600), 0)
            let start = Date()
            expectError(d, "\(d)/\(file): is a FIFO; expected \(what)")
            XCTAssertThrowsError(try BertEncoder.identity(modelDir: d)) { XCTAssertTrue("\($0)".contains("\(d)/\(file): is a FIFO"), "\($0)") }
            XCTAssertLessThan(Date().timeIntervalSince(start), 5)
            try FileManager.default.removeItem(atPath: d + "/" + file)
            try FileManager.default.createDirectory(atPath: d + "/" + file, withIntermediateDirectories: false)
            expectError(d, "\(d)/\(file): is a directory; expected \(what)")
        }
        let d = try folder("fifo-tokenizer-config", config: Self.realConfig, real: false)
        XCTAssertEqual(mkfifo(d + "/tokenizer_config.json", 0o600), 0)
        expectError(d, "\(d)/tokenizer_config.json: is a FIFO; expected the tokenizer_config.json")
        let e = try folder("bad-tokenizer-config", config: Self.realConfig, real: false)
        try "{\"do_lower_case\": \"yes\"}".write(toFile: e + "/tokenizer_config.json", atomically: true, encoding: .utf8)
        expectError(e, "\(e)/tokenizer_config.json: do_lower_case = yes is invalid (expected true or false)")
    }
}
