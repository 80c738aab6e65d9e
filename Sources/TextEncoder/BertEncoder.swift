import Support
import Foundation
import NN

/// The fields of a HuggingFace BERT `config.json` that the forward pass needs.
public struct BertConfig: Decodable, Sendable {
    public let hidden_size: Int
    public let num_attention_heads: Int
    public let num_hidden_layers: Int
    public let intermediate_size: Int
    public let max_position_embeddings: Int
    public let vocab_size: Int
    public let type_vocab_size: Int?
    public let layer_norm_eps: Double?
    public let hidden_act: String?
}

/// A frozen BERT-family encoder (all-MiniLM-L6-v2 by default) loaded from a folder with `config.json`,
/// `vocab.txt` and `model.safetensors`, run on OpenBLAS. `encode` returns, for each sentence, the
/// attention-mask mean of the token states after layers L/3, 2L/3 and L (coarse, medium, fine).
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
    /// Layers (1-based) whose mean-pooled states are returned: L/3, 2L/3, L.
    public let levelLayers: [Int]
    public var hidden: Int { config.hidden_size }
    let params = ParameterArena(seed: 0)
    let wordEmbeddings, positionEmbeddings, typeEmbeddings: Embedding
    let embeddingNorm: LayerNorm
    var layers: [Layer] = []

    public init(modelDir: String, maxLength: Int = 256) throws {
        self.modelDir = modelDir
        let configPath = modelDir + "/config.json", vocabPath = modelDir + "/vocab.txt"
        let weightsPath = modelDir + "/model.safetensors"
        for path in [configPath, vocabPath, weightsPath] where !FileManager.default.fileExists(atPath: path) {
            throw InputError(file: path, "missing; the text encoder folder needs config.json, vocab.txt and model.safetensors (Launch/setup installs the default one into models/)")
        }
        let configData = try Data(contentsOf: URL(fileURLWithPath: configPath))
        do { config = try JSONDecoder().decode(BertConfig.self, from: configData) }
        catch { throw InputError(file: configPath, "not a BERT config: \(error)") }
        guard config.hidden_size % config.num_attention_heads == 0, config.num_hidden_layers >= 3 else {
            throw InputError(file: configPath, "hidden_size must divide by num_attention_heads and num_hidden_layers must be >= 3")
        }
        if let act = config.hidden_act, act != "gelu" {
            throw InputError(file: configPath, "hidden_act \(act) is not supported (expected gelu)")
        }
        var lowercase = true
        if let tc = try? Data(contentsOf: URL(fileURLWithPath: modelDir + "/tokenizer_config.json")),
           let obj = try? JSONSerialization.jsonObject(with: tc) as? [String: Any], let lc = obj["do_lower_case"] as? Bool {
            lowercase = lc
        }
        let maxLength = min(maxLength, config.max_position_embeddings)
        tokenizer = try WordPieceTokenizer(vocabPath: vocabPath, lowercase: lowercase, maxLength: maxLength)
        let weights = try SafetensorsFile(path: weightsPath)
        let L = config.num_hidden_layers
        levelLayers = [L / 3, 2 * L / 3, L]

        let d = config.hidden_size, p = params
        wordEmbeddings = Embedding(p, "word", count: config.vocab_size, dim: d, std: 0)
        positionEmbeddings = Embedding(p, "position", count: config.max_position_embeddings, dim: d, std: 0)
        typeEmbeddings = Embedding(p, "type", count: config.type_vocab_size ?? 2, dim: d, std: 0)
        let eps = Float(config.layer_norm_eps ?? 1e-12)
        embeddingNorm = LayerNorm(p, "embeddings.norm", dim: d, eps: eps)
        for i in 0..<L {
            layers.append(Layer(attention: MultiHeadAttention(p, "layer\(i).attn", dim: d, heads: config.num_attention_heads),
                                attentionNorm: LayerNorm(p, "layer\(i).ln1", dim: d, eps: eps),
                                ffn: FeedForward(p, "layer\(i).ffn", dim: d, hiddenDim: config.intermediate_size),
                                outputNorm: LayerNorm(p, "layer\(i).ln2", dim: d, eps: eps)))
        }
        p.groups[0].frozen = true
        p.finalize()

        // HuggingFace names, with or without the "bert." prefix of BertForPreTraining checkpoints.
        let prefix = weights.tensors["bert.embeddings.word_embeddings.weight"] != nil ? "bert." : ""
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
        try load("embeddings.token_type_embeddings.weight", typeEmbeddings.table, [config.type_vocab_size ?? 2, d])
        try loadNorm("embeddings.LayerNorm", embeddingNorm)
        for (i, layer) in layers.enumerated() {
            let n = "encoder.layer.\(i)."
            try loadLinear(n + "attention.self.query", layer.attention.query)
            try loadLinear(n + "attention.self.key", layer.attention.key)
            try loadLinear(n + "attention.self.value", layer.attention.value)
            try loadLinear(n + "attention.output.dense", layer.attention.output)
            try loadNorm(n + "attention.output.LayerNorm", layer.attentionNorm)
            try loadLinear(n + "intermediate.dense", layer.ffn.fc1)
            try loadLinear(n + "output.dense", layer.ffn.fc2)
            try loadNorm(n + "output.LayerNorm", layer.outputNorm)
        }
        identity = try Self.identity(modelDir: modelDir)
    }

    /// Names an encoder without loading it: folder name plus a hash of config.json, vocab.txt and the
    /// safetensors header (tensor names, shapes and offsets).
    public static func identity(modelDir: String) throws -> String {
        let configData = try Data(contentsOf: URL(fileURLWithPath: modelDir + "/config.json"))
        var h = configData.withUnsafeBytes { checksum64($0) }
        let vocabData = try Data(contentsOf: URL(fileURLWithPath: modelDir + "/vocab.txt"))
        h = vocabData.withUnsafeBytes { checksum64($0, seed: h) }
        let weights = try SafetensorsFile(path: modelDir + "/model.safetensors")
        let header = weights.tensors.keys.sorted().map { "\($0)\(weights.tensors[$0]!.shape)\(weights.tensors[$0]!.begin)" }.joined()
        h = Data(header.utf8).withUnsafeBytes { checksum64($0, seed: h) }
        return URL(fileURLWithPath: modelDir).standardizedFileURL.lastPathComponent + "@" + String(h, radix: 16)
    }

    /// Encodes sentences given as token ids (each from `tokenizer.encode`) as one padded batch.
    /// out is (count, 3, hidden): coarse, medium, fine mean-pooled states per sentence.
    public func encode(tokenBatch: [[Int32]], into out: FloatPtr, arena: ActivationArena) {
        let b = tokenBatch.count, d = hidden
        guard b > 0 else { return }
        let l = tokenBatch.map(\.count).max()!
        let n = b * l
        var ids = [Int32](repeating: 0, count: n * 3)      // (word, position, type) per token
        var mask = [UInt8](repeating: 0, count: n)
        for (i, t) in tokenBatch.enumerated() {
            for j in 0..<l {
                let k = i * l + j
                ids[k * 3] = j < t.count ? t[j] : tokenizer.pad
                ids[k * 3 + 1] = Int32(j)
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
        let pooled = arena.allocate(b * d)
        mask.withUnsafeBufferPointer { maskBuffer in
            let m = maskBuffer.baseAddress!
            for (i, layer) in layers.enumerated() {
                // Post-LN BERT layer: x = LN1(x + MHA(x)); x = LN2(x + FFN(x)).
                let attnOut = arena.allocate(n * d)
                _ = layer.attention.forward(p, xq: x, xkv: x, keyMask: m, batch: b, queryLength: l, keyLength: l, attnOut, arena: arena)
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
