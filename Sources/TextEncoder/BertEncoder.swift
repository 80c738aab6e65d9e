import Support
import Foundation
import NN

/// A frozen BERT-family encoder (all-MiniLM-L6-v2 by default; MPNet, such as all-mpnet-base-v2, as well) loaded from
/// a folder with `config.json`, `vocab.txt` and `model.safetensors`, run on OpenBLAS. `encode` returns, for each
/// sentence, the attention-mask mean of the token states after layers L/3, 2L/3 and L (coarse, medium, fine).
/// MPNet differs from BERT in three places: positions count from 2 (HuggingFace's fixed padding index 1, + 1), there
/// are no token types, and every layer adds to its attention scores B[h, bucket(j - i)], one learned table shared by
/// the layers (`relativeBucket`, 32 buckets as in HuggingFace).
public final class BertEncoder {
    struct Layer {
        var attention: MultiHeadAttention
        var attentionNorm: LayerNorm
        var ffn: FeedForward
        var outputNorm: LayerNorm
    }

    public let config: BertConfig
    public let tokenizer: WordPieceTokenizer
    public let modelDir: String
    /// Names the encoder: folder name plus a hash of config.json, vocab.txt and the safetensors header.
    public let identity: String
    /// `weightsChecksum(modelDir:)` of this encoder's model.safetensors (read once, with the weights).
    public let weightsChecksum: String
    /// Layers (1-based) whose mean-pooled states are returned: L/3, 2L/3, L.
    public let levelLayers: [Int]
    public var hidden: Int { config.hidden_size }
    let params = ParameterArena(seed: 0)
    let wordEmbeddings, positionEmbeddings, typeEmbeddings: Embedding
    let embeddingNorm: LayerNorm
    var layers: [Layer] = []
    /// MPNet: encoder.relative_attention_bias.weight, (buckets, heads); nil for BERT.
    let relativeAttentionBias: Embedding?

    /// The three files of a model folder, each checked to be a regular file before anything opens it.
    static func modelFiles(_ modelDir: String) throws -> (config: String, vocab: String, weights: String) {
        let files = (config: modelDir + "/config.json", vocab: modelDir + "/vocab.txt", weights: modelDir + "/model.safetensors")
        for (path, what) in [(files.config, "encoder config.json"), (files.vocab, "WordPiece vocabulary (vocab.txt)"),
                             (files.weights, "encoder weights (model.safetensors)")] {
            try requireResolvableLink(path, what: "the \(what)")
            guard FileManager.default.fileExists(atPath: path) else {
                throw InputError(file: path, "missing; the text encoder folder needs config.json, vocab.txt and model.safetensors (Launch/setup installs the default one into models/, Launch/setup --encoder all-mpnet-base-v2 the larger one)")
            }
            try requireRegularFile(path, what: what)
        }
        return files
    }

    /// The family's defaults of the tokenizer settings: lower-casing, and BERT's [CLS], [SEP], [UNK], [PAD] or
    /// MPNetTokenizer's <s>, </s>, [UNK], <pad> (an MPNet vocabulary also holds BERT's [CLS] and [SEP], which would
    /// frame every text wrongly without an error).
    static func defaultTokenizerSettings(_ config: BertConfig) -> (lowercase: Bool, specials: WordPieceTokenizer.SpecialTokens) {
        (true, config.isMPNet ? .init(cls: "<s>", sep: "</s>", unk: "[UNK]", pad: "<pad>") : .init())
    }

    /// The tokenizer settings of `modelDir`: its tokenizer_config.json's `do_lower_case` and special tokens (HuggingFace
    /// names them there, as a string or {"content": ...}), the family's defaults where it names none or has none.
    static func tokenizerSettings(modelDir: String, config: BertConfig) throws -> (lowercase: Bool, specials: WordPieceTokenizer.SpecialTokens) {
        var (lowercase, specials) = defaultTokenizerSettings(config)
        let path = modelDir + "/tokenizer_config.json"
        if !FileManager.default.fileExists(atPath: path), let target = try? FileManager.default.destinationOfSymbolicLink(atPath: path) {
            throw InputError(file: path, "is a symbolic link to \(target), which does not exist (expected the tokenizer settings, or no file for the defaults)")
        }
        guard FileManager.default.fileExists(atPath: path) else { return (lowercase, specials) }
        let tc = try readRegularFile(path, what: "tokenizer_config.json", limit: 16 << 20)
        guard let obj = (try? JSONSerialization.jsonObject(with: tc)) as? [String: Any] else {
            throw InputError(file: path, "not a JSON object (expected the tokenizer settings, e.g. {\"do_lower_case\": true})")
        }
        try refuseDuplicateJSONKeys(tc, file: path)   // HuggingFace would read the last do_lower_case of two
        if let value = obj["do_lower_case"] {
            guard let lc = value as? Bool else {
                throw InputError.invalid("do_lower_case", value, expected: "true or false", in: path)
            }
            lowercase = lc
        }
        func name(_ key: String, _ fallback: String) throws -> String {
            guard let value = obj[key], !(value is NSNull) else { return fallback }
            if let text = value as? String, !text.isEmpty { return text }
            if let text = (value as? [String: Any])?["content"] as? String, !text.isEmpty { return text }
            throw InputError.invalid(key, value, expected: "a token of vocab.txt as a string, e.g. \"\(fallback)\"", in: path)
        }
        specials = .init(cls: try name("cls_token", specials.cls), sep: try name("sep_token", specials.sep),
                         unk: try name("unk_token", specials.unk), pad: try name("pad_token", specials.pad))
        return (lowercase, specials)
    }

    /// Loads the encoder of `modelDir`. `maxLength` is the most WordPiece tokens per text, [CLS] and [SEP]
    /// included (--max-tokens, encoder.max_tokens): at least 2 and at most max_position_embeddings.
    /// config.json, vocab.txt and the tensor shapes of model.safetensors are checked against each other
    /// before any weight is allocated.
    /// `precision`: the GEMM inputs (`encoder.precision`, resolved: `Precision.resolve`); the weights' bf16 copy is made once here.
    public init(modelDir: String, maxLength: Int = 256, precision: Precision = .fp32) throws {
        self.modelDir = modelDir
        let files = try Self.modelFiles(modelDir)
        let configPath = files.config, vocabPath = files.vocab, weightsPath = files.weights
        guard maxLength >= 2 else {
            throw InputError.invalid("maximum tokens per text (--max-tokens, encoder.max_tokens)", maxLength, expected: "at least 2: [CLS] and [SEP]")
        }
        config = try BertConfig.load(path: configPath)
        guard config.firstPosition + maxLength <= config.max_position_embeddings else {
            let most = config.max_position_embeddings - config.firstPosition
            throw InputError(file: configPath, "max_position_embeddings = \(config.max_position_embeddings) is below the maximum tokens per text (--max-tokens, encoder.max_tokens) = \(maxLength)\(config.isMPNet ? " + the first position \(config.firstPosition)" : ""); expected a maximum of at most \(most)")
        }
        let (lowercase, specials) = try Self.tokenizerSettings(modelDir: modelDir, config: config)
        tokenizer = try WordPieceTokenizer(vocabPath: vocabPath, lowercase: lowercase, maxLength: maxLength, specials: specials)
        let weights = try SafetensorsFile(path: weightsPath)
        weightsChecksum = String(weights.checksum(seed: 0), radix: 16)
        let L = config.num_hidden_layers
        levelLayers = [L / 3, 2 * L / 3, L]
        let d = config.hidden_size, types = config.isMPNet ? 1 : config.type_vocab_size ?? 2
        let buckets = config.relative_attention_num_buckets ?? 32
        let mpnet = config.isMPNet
        // HuggingFace's parameter names of the two families (the attention's projections, its LayerNorm).
        let names = mpnet
            ? (q: "attention.attn.q", k: "attention.attn.k", v: "attention.attn.v", o: "attention.attn.o", norm: "attention.LayerNorm")
            : (q: "attention.self.query", k: "attention.self.key", v: "attention.self.value", o: "attention.output.dense",
               norm: "attention.output.LayerNorm")

        // HuggingFace names, with or without the "bert." prefix of BertForPreTraining checkpoints. Every tensor
        // is checked against config.json before the parameters are allocated (so a config that claims huge
        // tables fails here, naming the tensor, instead of allocating them).
        let family = mpnet ? "mpnet." : "bert."
        let prefix = weights.tensors[family + "embeddings.word_embeddings.weight"] != nil ? family : ""
        // A checkpoint with more layers than config.json names would run with its last layers left out.
        if weights.tensors.keys.contains(where: { $0.hasPrefix(prefix + "encoder.layer.\(L).") }) {
            throw InputError(file: weightsPath, "holds encoder.layer.\(L) but config.json says num_hidden_layers = \(L) (expected the layers 0 ..< \(L))")
        }
        var expected: [(String, [Int], String)] = [
            ("embeddings.word_embeddings.weight", [config.vocab_size, d], "vocab_size, hidden_size"),
            ("embeddings.position_embeddings.weight", [config.max_position_embeddings, d], "max_position_embeddings, hidden_size"),
            ("embeddings.LayerNorm.weight", [d], "hidden_size"), ("embeddings.LayerNorm.bias", [d], "hidden_size"),
        ]
        expected += mpnet ? [("encoder.relative_attention_bias.weight", [buckets, config.num_attention_heads], "relative_attention_num_buckets, num_attention_heads")]
                          : [("embeddings.token_type_embeddings.weight", [types, d], "type_vocab_size, hidden_size")]
        for i in 0..<L {
            let n = "encoder.layer.\(i)."
            for part in [names.q, names.k, names.v, names.o] {
                expected += [(n + part + ".weight", [d, d], "hidden_size, hidden_size"), (n + part + ".bias", [d], "hidden_size")]
            }
            expected += [(n + "intermediate.dense.weight", [config.intermediate_size, d], "intermediate_size, hidden_size"),
                         (n + "intermediate.dense.bias", [config.intermediate_size], "intermediate_size"),
                         (n + "output.dense.weight", [d, config.intermediate_size], "hidden_size, intermediate_size"),
                         (n + "output.dense.bias", [d], "hidden_size")]
            for norm in [names.norm, "output.LayerNorm"] {
                expected += [(n + norm + ".weight", [d], "hidden_size"), (n + norm + ".bias", [d], "hidden_size")]
            }
        }
        for (name, shape, keys) in expected {
            guard let t = weights.tensors[prefix + name] else {
                let mpnetTensors = !mpnet && weights.tensors.keys.contains { $0.hasSuffix("encoder.relative_attention_bias.weight") }
                throw InputError(file: weightsPath, "lacks tensor \(prefix + name) (config.json: num_hidden_layers = \(L), hidden_size = \(d))"
                                 + (mpnetTensors ? "; it holds an MPNet's encoder.relative_attention_bias.weight: config.json needs \"model_type\": \"mpnet\"" : ""))
            }
            guard t.shape == shape else {
                throw InputError(file: weightsPath, "tensor \(prefix + name) has shape \(t.shape); config.json (\(keys)) expects \(shape)")
            }
            guard ["F32", "F16", "BF16", "F64"].contains(t.dtype) else {
                throw InputError(file: weightsPath, "tensor \(prefix + name) has dtype \(t.dtype) (expected F32, F16, BF16 or F64)")
            }
        }
        guard tokenizer.size <= config.vocab_size else {
            throw InputError(file: vocabPath, "has \(tokenizer.size) tokens but the word-embedding table of model.safetensors has \(config.vocab_size) rows (config.json vocab_size); expected at most one token per row")
        }

        let p = params
        wordEmbeddings = Embedding(p, "word", count: config.vocab_size, dim: d, std: 0)
        positionEmbeddings = Embedding(p, "position", count: config.max_position_embeddings, dim: d, std: 0)
        typeEmbeddings = Embedding(p, "type", count: types, dim: d, std: 0)
        let eps = Float(config.layer_norm_eps ?? 1e-12)
        embeddingNorm = LayerNorm(p, "embeddings.norm", dim: d, eps: eps)
        relativeAttentionBias = mpnet ? Embedding(p, "relative_bias", count: buckets, dim: config.num_attention_heads, std: 0) : nil
        for i in 0..<L {
            layers.append(Layer(attention: MultiHeadAttention(p, "layer\(i).attn", dim: d, heads: config.num_attention_heads),
                                attentionNorm: LayerNorm(p, "layer\(i).ln1", dim: d, eps: eps),
                                ffn: FeedForward(p, "layer\(i).ffn", dim: d, hiddenDim: config.intermediate_size),
                                outputNorm: LayerNorm(p, "layer\(i).ln2", dim: d, eps: eps)))
        }
        p.groups[0].frozen = true
        p.finalize()

        func load(_ name: String, _ ref: ParamRef, _ shape: [Int]) throws {
            try weights.copy(prefix + name, shape: shape, into: p.value(ref))
        }
        func loadLinear(_ name: String, _ l: Linear) throws {
            try load(name + ".weight", l.weight, [l.outFeatures, l.inFeatures])
            try load(name + ".bias", l.bias!, [l.outFeatures])
        }
        func loadNorm(_ name: String, _ n: LayerNorm) throws {
            try load(name + ".weight", n.gamma, [d]); try load(name + ".bias", n.beta, [d])
        }
        try load("embeddings.word_embeddings.weight", wordEmbeddings.table, [config.vocab_size, d])
        try load("embeddings.position_embeddings.weight", positionEmbeddings.table, [config.max_position_embeddings, d])
        if let relativeAttentionBias {   // MPNet: no token types (the one type row stays 0, adding nothing)
            try load("encoder.relative_attention_bias.weight", relativeAttentionBias.table, [buckets, config.num_attention_heads])
        } else {
            try load("embeddings.token_type_embeddings.weight", typeEmbeddings.table, [types, d])
        }
        try loadNorm("embeddings.LayerNorm", embeddingNorm)
        for (i, layer) in layers.enumerated() {
            let n = "encoder.layer.\(i)."
            try loadLinear(n + names.q, layer.attention.query)
            try loadLinear(n + names.k, layer.attention.key)
            try loadLinear(n + names.v, layer.attention.value)
            try loadLinear(n + names.o, layer.attention.output)
            try loadNorm(n + names.norm, layer.attentionNorm)
            try loadLinear(n + "intermediate.dense", layer.ffn.fc1)
            try loadLinear(n + "output.dense", layer.ffn.fc2)
            try loadNorm(n + "output.LayerNorm", layer.outputNorm)
        }
        params.setPrecision(precision)
        identity = try Self.identity(modelDir: modelDir, precision: precision)
    }

    /// Names an encoder without loading it: folder name plus a hash of config.json, vocab.txt, the safetensors header
    /// (tensor names, shapes and offsets) and the tokenizer settings when they are not the family's defaults, and
    /// `+bf16` when its GEMMs run in bf16 (features differ in the last bits, so a store made in one precision is not
    /// taken for the other). The weights themselves: `weightsChecksum`.
    public static func identity(modelDir: String, precision: Precision = .fp32) throws -> String {
        let files = try modelFiles(modelDir)
        let configData = try readRegularFile(files.config, what: "encoder config.json", limit: 16 << 20)
        var h = configData.withUnsafeBytes { checksum64($0) }
        let vocabData = try readRegularFile(files.vocab, what: "WordPiece vocabulary (vocab.txt)", limit: 256 << 20)
        h = vocabData.withUnsafeBytes { checksum64($0, seed: h) }
        let weights = try SafetensorsFile(path: files.weights)
        let header = weights.tensors.keys.sorted().map { "\($0)\(weights.tensors[$0]!.shape)\(weights.tensors[$0]!.begin)" }.joined()
        h = Data(header.utf8).withUnsafeBytes { checksum64($0, seed: h) }
        // Tokenizer settings other than the family's defaults (tokenizer_config.json: lower-casing, special tokens) make
        // other tokens: part of the identity. The defaults add nothing, so that the identities of stores and checkpoints
        // made before they were covered keep matching.
        let config = try BertConfig.load(path: files.config)
        let settings = try tokenizerSettings(modelDir: modelDir, config: config)
        if settings != defaultTokenizerSettings(config) {
            let t = settings.specials
            h = Data("lowercase=\(settings.lowercase) cls=\(t.cls) sep=\(t.sep) unk=\(t.unk) pad=\(t.pad)".utf8).withUnsafeBytes { checksum64($0, seed: h) }
        }
        return URL(fileURLWithPath: modelDir).standardizedFileURL.lastPathComponent + "@" + String(h, radix: 16) + (precision == .bf16 ? "+bf16" : "")
    }

    /// `checksum64` (hexadecimal) of the whole model.safetensors of `modelDir`, header and weights. A feature store
    /// records it beside `identity` (`StoreIdentity.encoderWeights`): `identity` covers the header only, so an encoder
    /// of the same shapes with other weights (a fine-tuned copy saved under the same folder name) is told apart by it.
    /// Computed once per file in a process (an ensemble's members each check it; 440 MB for an MPNet): keyed by the
    /// file's real path, inode, size and modification time, so a file replaced meanwhile is read again.
    public static func weightsChecksum(modelDir: String) throws -> String {
        let path = try modelFiles(modelDir).weights
        let a = try? FileManager.default.attributesOfItem(atPath: path)
        let key = a.map { "\(resolvedPath(path)) \($0[.systemFileNumber] ?? "-") \($0[.size] ?? "-") \(($0[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0)" }
        if let key, let known = checksumCache.withLock({ $0[key] }) { return known }
        let value = String(try SafetensorsFile(path: path).checksum(seed: 0), radix: 16)
        if let key { checksumCache.withLock { $0[key] = value } }
        return value
    }
    private static let checksumCache = Locked<[String: String]>([:])

    /// Encodes sentences given as token ids (each from `tokenizer.encode`) as one padded batch.
    /// out is (count, 3, hidden): coarse, medium, fine mean-pooled states per sentence.
    public func encode(tokenBatch: [[Int32]], into out: FloatPtr, arena: ActivationArena) {
        let b = tokenBatch.count, d = hidden
        guard b > 0 else { return }
        let l = tokenBatch.map(\.count).max()!
        let n = b * l
        var ids = [Int32](repeating: 0, count: n * 3)      // (word, position, type) per token
        var mask = [UInt8](repeating: 0, count: n)
        // BERT: token j at position j. MPNet: at 2 + j, padding at 1 (HuggingFace's create_position_ids_from_input_ids
        // with its fixed padding index 1; padding is masked out either way).
        let first = Int32(config.firstPosition), padPosition = Int32(config.isMPNet ? 1 : 0)
        for (i, t) in tokenBatch.enumerated() {
            for j in 0..<l {
                let k = i * l + j
                ids[k * 3] = j < t.count ? t[j] : tokenizer.pad
                ids[k * 3 + 1] = j < t.count || !config.isMPNet ? first + Int32(j) : padPosition
                ids[k * 3 + 2] = 0
                mask[k] = j < t.count ? 1 : 0
            }
        }
        let p = params
        var x = arena.allocate(n * d)
        let summed = arena.allocate(n * d)
        ids.withUnsafeBufferPointer {
            embeddingSumForward(p, tables: [wordEmbeddings, positionEmbeddings, typeEmbeddings], ids: $0.baseAddress!, rows: n, summed)
        }
        _ = embeddingNorm.forward(p, summed, x, rows: n, arena: arena)
        // MPNet: B[h, bucket(j - i)] for every offset j - i in -(l - 1) ... l - 1, (heads, 2 l - 1), shared by the layers.
        var relativeBias: RelativeBias? = nil
        if let table = relativeAttentionBias {
            let heads = config.num_attention_heads, span = 2 * l - 1
            let values = arena.allocate(heads * span), weights = p.value(table.table)
            for r in -(l - 1)...(l - 1) {
                let bucket = Self.relativeBucket(r)   // HuggingFace: 32 buckets, whatever the table's rows
                for h in 0..<heads { values[h * span + r + l - 1] = weights[bucket * heads + h] }
            }
            relativeBias = RelativeBias(values: values, span: l)
        }
        let pooled = arena.allocate(b * d)
        mask.withUnsafeBufferPointer { maskBuffer in
            let m = maskBuffer.baseAddress!
            for (i, layer) in layers.enumerated() {
                // Post-LN BERT layer: x = LN1(x + MHA(x)); x = LN2(x + FFN(x)).
                let attnOut = arena.allocate(n * d)
                _ = layer.attention.forward(p, xq: x, xkv: x, keyMask: m, batch: b, queryLength: l, keyLength: l,
                                            relativeBias: relativeBias, attnOut, arena: arena)
                for k in 0..<n * d { attnOut[k] += x[k] }
                let x1 = arena.allocate(n * d)
                _ = layer.attentionNorm.forward(p, attnOut, x1, rows: n, arena: arena)
                let ffnOut = arena.allocate(n * d)
                _ = layer.ffn.forward(p, x1, ffnOut, rows: n, arena: arena)
                for k in 0..<n * d { ffnOut[k] += x1[k] }
                let x2 = arena.allocate(n * d)
                _ = layer.outputNorm.forward(p, ffnOut, x2, rows: n, arena: arena)
                x = x2
                if let level = levelLayers.firstIndex(of: i + 1) {
                    maskedMeanForward(x, mask: m, batch: b, length: l, dim: d, pooled)
                    for s in 0..<b { (out + (s * 3 + level) * d).update(from: pooled + s * d, count: d) }
                }
            }
        }
    }

    /// MPNet's bucket of the relative position `r` = key - query (HuggingFace's MPNetEncoder.relative_position_bucket
    /// as its compute_position_bias calls it: 32 buckets, max_distance 128), in its float32 arithmetic: 16 buckets per
    /// direction (keys after the query in the upper 16); within them, |r| < 8 exactly, then
    /// 8 + trunc(ln(|r| / 8) / ln(16) * 8), at most 15.
    public static func relativeBucket(_ r: Int) -> Int {
        let half = 16, exact = 8, n = abs(r)
        let base = r > 0 ? half : 0
        if n < exact { return base + n }
        let scale = Float(Foundation.log(128.0 / Double(exact)))
        let large = exact + Int(logf(Float(n) / Float(exact)) / scale * Float(half - exact))
        return base + min(large, half - 1)
    }

    /// Encodes texts in batches of similar length (sorted by token count, so little padding), in a
    /// fixed batch order that does not depend on how many ranks share the work.
    /// out is (texts.count, 3, hidden).
    public func encode(texts: [String], into out: FloatPtr, maxBatchTokens: Int = 4096) {
        let tokens = texts.map { tokenizer.encode($0) }
        for batch in Self.batches(lengths: tokens.map(\.count), maxBatchTokens: maxBatchTokens) {
            encode(indices: batch, tokens: tokens, into: out)
        }
    }

    /// Encodes one batch of `indices` into their rows of `out` (row i of out for sentence i), or, with
    /// `rowOffset`, into consecutive rows starting there.
    public func encode(indices: [Int], tokens: [[Int32]], into out: FloatPtr, rowOffset: Int? = nil) {
        let arena = scratch
        arena.reset()
        let rows = arena.allocate(indices.count * 3 * hidden)
        encode(tokenBatch: indices.map { tokens[$0] }, into: rows, arena: arena)
        for (k, i) in indices.enumerated() {
            let row = rowOffset.map { $0 + k } ?? i
            (out + row * 3 * hidden).update(from: rows + k * 3 * hidden, count: 3 * hidden)
        }
    }
    private let scratch = ActivationArena()

    /// Deterministic batches: indices sorted by (length, index), cut when the padded size would pass
    /// `maxBatchTokens` or 128 sentences.
    public static func batches(lengths: [Int], maxBatchTokens: Int) -> [[Int]] {
        let order = lengths.indices.sorted { (lengths[$0], $0) < (lengths[$1], $1) }
        var result: [[Int]] = [], current: [Int] = []
        for i in order {
            if !current.isEmpty && ((current.count + 1) * lengths[i] > maxBatchTokens || current.count >= 128) {
                result.append(current); current = []
            }
            current.append(i)
        }
        if !current.isEmpty { result.append(current) }
        return result
    }
}
