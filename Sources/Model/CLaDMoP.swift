import NN

/// Grouping block x: learnable source-type embeddings (4, d) and G grouping layers, each with its
/// centroid tokens (c / 2^g, d), one cross-attention layer and S self-attention layers.
struct GroupingBlock {
    var typeEmbedding: ParamRef
    var centroids: [ParamRef]
    var cross: [TransformerLayer]
    var selfLayers: [[TransformerLayer]]
}

/// The DM branch of CLaDMoP: molecule and disease enrichment, per-level criteria projections,
/// three grouping blocks (coarse, medium, fine) and the final LayerNorm + projection to the encoder width.
/// Parameters live in one `ParameterArena`; names are stable (docs/checkpoints.md).
public final class CLaDMoP {
    public let config: ModelConfig
    public let params: ParameterArena
    let molToken, molPosition: Embedding
    let molLayers: [TransformerLayer]
    let icdTables: [Embedding]
    let category: Embedding
    let disLayers: [TransformerLayer]
    let levelProjection: [Linear]
    var blocks: [GroupingBlock] = []
    let finalNorm: LayerNorm
    let output: Linear
    /// log s of the InfoNCE logit scale s (frozen when `loss.logit_scale: fixed`).
    public let logScale: ParamRef

    /// Registers every parameter in `params` (not finalized: callers may add LoRA and heads, then finalize).
    public init(_ config: ModelConfig, params: ParameterArena) {
        self.config = config
        self.params = params
        let d = config.dim, p = params, ffn = 4 * d
        molToken = Embedding(p, "mol.token", count: config.molVocab, dim: d)
        molPosition = Embedding(p, "mol.position", count: config.maxMolecules, dim: d)
        molLayers = (0..<config.molLayers).map { TransformerLayer(p, "mol.layer\($0)", dim: d, heads: config.heads, ffnDim: ffn) }
        icdTables = config.icdTableSizes.enumerated().map { Embedding(p, "dis.icd_depth\($0.offset + 1)", count: $0.element, dim: d) }
        category = Embedding(p, "dis.category", count: config.categoryCount, dim: d)
        disLayers = (0..<config.disLayers).map { TransformerLayer(p, "dis.layer\($0)", dim: d, heads: config.heads, ffnDim: ffn) }
        let levelNames = ModelConfig.levelNames
        levelProjection = levelNames.map { Linear(p, "fusion.\($0).proj", inFeatures: config.encoderDim, outFeatures: d) }
        for x in 0..<ModelConfig.levels {
            let name = "fusion.\(levelNames[x])"
            var block = GroupingBlock(typeEmbedding: p.register("\(name).source_type", shape: [4, d], initializer: .normal(std: 0.02)),
                                      centroids: [], cross: [], selfLayers: [])
            for g in 0..<config.groupingLayers {
                block.centroids.append(p.register("\(name).group\(g).centroids", shape: [config.centroidCount(g), d], initializer: .normal(std: 1)))
                block.cross.append(TransformerLayer(p, "\(name).group\(g).cross", dim: d, heads: config.heads, ffnDim: ffn, cross: true))
                block.selfLayers.append((0..<config.selfLayers).map {
                    TransformerLayer(p, "\(name).group\(g).self\($0)", dim: d, heads: config.heads, ffnDim: ffn)
                })
            }
            blocks.append(block)
        }
        finalNorm = LayerNorm(p, "head.norm", dim: d)
        output = Linear(p, "head.proj", inFeatures: d, outFeatures: config.encoderDim)
        logScale = p.register("loss.log_scale", shape: [1], initializer: .zeros, group: 0)
        // The value is set after finalize (see `initializeLogScale`).
    }

    /// Sets log s to its configured initial value (call once after `params.finalize()`).
    public func initializeLogScale() { params.value(logScale)[0] = config.initialLogScale }

    /// Adds LoRA adapters to the Q/K/V/O projections of the cross-attention layers (`cross`) and/or of the
    /// self-attention layers (`selfAttention`), in parameter group `group`. Call before finalize.
    public func addLoRA(rank: Int, alpha: Float, cross: Bool, selfAttention: Bool, group: Int) {
        func add(_ layer: inout TransformerLayer, _ name: String) {
            layer.attention.addLoRA(params, name + ".attn", rank: rank, alpha: alpha, group: group)
        }
        let levelNames = ModelConfig.levelNames
        for x in blocks.indices {
            for g in blocks[x].cross.indices {
                if cross { add(&blocks[x].cross[g], "fusion.\(levelNames[x]).group\(g).cross") }
                if selfAttention {
                    for s in blocks[x].selfLayers[g].indices { add(&blocks[x].selfLayers[g][s], "fusion.\(levelNames[x]).group\(g).self\(s)") }
                }
            }
        }
        // Note: only the fusion blocks get LoRA (the paper's X_LoRA / S_LoRA); enrichment layers stay frozen.
    }
}
