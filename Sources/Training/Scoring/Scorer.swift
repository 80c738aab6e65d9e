import Communication
import Foundation
import Model
import TrialData
import NN

/// Success probabilities of a batch of trials: a fine-tuned `OutcomeModel` (sigmoid of the head's logit) or a
/// pretrained model scored zero-shot (`ZeroShotScorer`). `scoreTrials` runs either over a sharded list.
public protocol TrialScorer {
    func probabilities(_ batch: ModelBatch, arena: ActivationArena) -> [Float]
}

extension OutcomeModel: TrialScorer {
    /// sigmoid(logit) of the prediction head.
    public func probabilities(_ batch: ModelBatch, arena: ActivationArena) -> [Float] {
        let (logits, _) = forward(batch, arena: arena)
        return (0..<batch.count).map { sigmoid(logits[$0]) }
    }
}

/// The pair-matching score of a pretrained model, the sigmoid of its InfoNCE logit up to rounding:
/// sigmoid(s f_C . f_DM / max(||f_C|| ||f_DM||, 1e-12)) (the loss normalizes each row, clamping each norm at 1e-12:
/// the same value but for all-but-zero embeddings), or sigmoid(s f_C . f_DM) for a model pretrained without normalized
/// embeddings (`loss.normalize: false`).
public struct ZeroShotScorer: TrialScorer {
    public let model: CLaDMoP
    /// Whether the pretraining normalized both embeddings (`loss.normalize`).
    public let normalize: Bool
    public init(model: CLaDMoP, normalize: Bool) { self.model = model; self.normalize = normalize }

    public func probabilities(_ batch: ModelBatch, arena: ActivationArena) -> [Float] {
        let e = model.config.encoderDim
        let state = model.forward(batch, arena: arena)
        let fC = arena.allocate(batch.count * e)
        batch.criteriaEmbedding(dim: e, into: fC)
        let s = expf(model.params.value(model.logScale)[0])
        return (0..<batch.count).map { i in
            var dot: Float = 0, na: Float = 0, nb: Float = 0
            for k in 0..<e { let a = fC[i * e + k], b = state.fDM[i * e + k]; dot += a * b; na += a * a; nb += b * b }
            return sigmoid(normalize ? s * dot / max((na * nb).squareRoot(), 1e-12) : s * dot)
        }
    }
}

/// Probabilities of `scorer` for `trials`, sharded over ranks (`shard`), `chunk` trials per forward, and
/// gathered: every rank gets all scores, in the order of `trials`.
/// `stall`: a watchdog for the scoring commands (a rank that stops would leave the others in the gather for ever);
/// nil inside fine-tuning, whose own watchdog runs (two would take each other's heartbeats).
public func scoreTrials(_ trials: [StoredTrial], scorer: TrialScorer, builder: BatchBuilder, comm: Communicator,
                        arena: ActivationArena, chunk: Int = 64, stall: StallPolicy? = nil) -> [Double] {
    let mine = shard(trials.count, rank: comm.rank, of: comm.size)
    var local: [Float] = []
    local.reserveCapacity(mine.count)
    // Ranks score at their own pace until the gather: only a rank that stopped answering ends the job.
    let watchdog = stall.map { Watchdog.ofPeers($0, comm: comm, activity: "scoring") }
    defer { watchdog?.stop() }
    for start in stride(from: mine.lowerBound, to: mine.upperBound, by: chunk) {
        let end = min(start + chunk, mine.upperBound)
        arena.reset()
        local += scorer.probabilities(builder.batch(Array(trials[start..<end])), arena: arena)
        watchdog?.beat()
    }
    return gatherScores(local, total: trials.count, comm: comm)
}

/// All-gathers per-rank score blocks (rank order; rank r holds rows [r n / W, (r + 1) n / W)).
public func gatherScores(_ local: [Float], total: Int, comm: Communicator) -> [Double] {
    gatherRows(local, total: total, width: 1, comm: comm).map(Double.init)
}

/// All-gathers rows of `width` floats sharded by `shard`: rank r holds rows [r n / W, (r + 1) n / W); every
/// rank gets all `total` rows in order.
public func gatherRows(_ local: [Float], total: Int, width: Int, comm: Communicator) -> [Float] {
    let counts = (0..<comm.size).map { shard(total, rank: $0, of: comm.size).count * width }
    var all = [Float](repeating: 0, count: max(total * width, 1))
    local.withUnsafeBufferPointer { l in
        all.withUnsafeMutableBufferPointer { comm.allGatherV(send: l.baseAddress ?? UnsafePointer(bitPattern: 64)!, receive: $0.baseAddress!, counts: counts) }
    }
    return Array(all.prefix(total * width))
}
