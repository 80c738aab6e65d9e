import Foundation
import Model
import NN
import Support

/// What a fine-tuned checkpoint needs besides its tensors (stored in its metadata).
public struct OutcomeHeadSpec: Codable, Equatable {
    public var loraRank: Int
    public var loraAlpha: Float
    public var loraCross: Bool
    public var loraSelf: Bool
    public var headHidden: Int
    public var threshold: Double
    public var trainFile: String
    public var validFile: String
    /// Sorted ICD-code sets seen in the training file (for the "new diseases" subset).
    public var trainingDiseaseSets: [String]
    /// Sorted NCT ids of the trials this model trained on or selected its epoch on (auxiliary ones included): the
    /// scoring says when it scores them (in-sample). Absent in checkpoints written before it.
    public var trainedTrials: [String]? = nil
    /// A cross-fitted member: the fold of RUN/folds.csv it selected its epoch on and did not train on (member k holds
    /// out fold k; `--out-of-fold` checks it). Absent for other models and in checkpoints written before version 6.
    public var heldOutFold: Int? = nil

    /// Sizes and the threshold, checked (read back from a checkpoint's `head`).
    public func validate(path: String) throws {
        func require(_ ok: Bool, _ key: String, _ value: Any, _ expected: String) throws {
            guard ok else { throw InputError.invalid("head.\(key)", value, expected: expected, in: path) }
        }
        try require((1...256).contains(loraRank), "loraRank", loraRank, "an integer in [1, 256]")
        try require(loraAlpha.isFinite && (0...4096).contains(loraAlpha), "loraAlpha", loraAlpha, "a number in [0, 4096]")
        try require((1...8192).contains(headHidden), "headHidden", headHidden, "an integer in [1, 8192]")
        try require(threshold.isFinite && (0...1).contains(threshold), "threshold", threshold, "a probability in [0, 1]")
        if let fold = heldOutFold { try require((1...4096).contains(fold), "heldOutFold", fold, "a fold number of folds.csv, from 1") }
    }
}

/// The pretrained DM branch (frozen) + LoRA adapters + prediction head, in one arena: group 0 frozen,
/// group 1 LoRA, group 2 head. LoRA and head are registered last, so the trainable parameters are one
/// contiguous tail of the arena (one all-reduce).
public final class OutcomeModel {
    public let params: ParameterArena
    public let model: CLaDMoP
    public let head: PredictionHead
    public let space: FeatureSpace
    public let trainableOffset: Int
    public let spec: OutcomeHeadSpec

    public init(model config: ModelConfig, space: FeatureSpace, spec: OutcomeHeadSpec, seed: UInt64,
                loraLR: Float, headLR: Float, weightDecay: Float) {
        params = ParameterArena(seed: seed)
        params.groups = [ParamGroup(name: "pretrained", learningRate: headLR, weightDecay: weightDecay, frozen: true),
                         ParamGroup(name: "lora", learningRate: loraLR, weightDecay: weightDecay),
                         ParamGroup(name: "head", learningRate: headLR, weightDecay: weightDecay)]
        model = CLaDMoP(config, params: params)
        trainableOffset = params.count     // the pretrained base is frozen: LoRA and head follow it
        if spec.loraCross || spec.loraSelf {
            model.addLoRA(rank: spec.loraRank, alpha: spec.loraAlpha, cross: spec.loraCross, selfAttention: spec.loraSelf, group: 1)
        }
        head = PredictionHead(params, inputDim: config.encoderDim + config.dim, hiddenDim: spec.headHidden, group: 2)
        params.finalize()
        model.initializeLogScale()
        self.space = space
        self.spec = spec
    }

    public var hasLoRA: Bool { spec.loraCross || spec.loraSelf }

    /// Success logits of a batch; `backward` (when requested) takes dL/dlogit and accumulates gradients.
    public func forward(_ batch: ModelBatch, arena: ActivationArena)
        -> (logits: FloatPtr, backward: (ConstFloatPtr) -> Void) {
        let n = batch.count, e = model.config.encoderDim, d = model.config.dim
        let state = model.forward(batch, arena: arena)
        let x = arena.allocate(n * (e + d))
        let fC = arena.allocate(n * e)
        batch.criteriaEmbedding(dim: e, into: fC)
        for i in 0..<n {
            (x + i * (e + d)).update(from: fC + i * e, count: e)
            (x + i * (e + d) + e).update(from: state.pooled + i * d, count: d)
        }
        let logits = arena.allocate(n)
        let cache = head.forward(params, x, logits: logits, rows: n, arena: arena)
        return (logits, { [self] dLogits in
            let dx = arena.zeros(n * (e + d))
            head.backward(params, cache, dLogits: dLogits, dx: hasLoRA ? dx : nil, rows: n, arena: arena)
            if hasLoRA {
                let dPooled = arena.allocate(n * d)
                for i in 0..<n { (dPooled + i * d).update(from: dx + i * (e + d) + e, count: d) }
                model.backward(state, dFDM: nil, dPooled: dPooled, arena: arena)
            }
        })
    }
}
