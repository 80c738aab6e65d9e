import Communication
import NN
import TrialData

/// One distributed optimizer step of fine-tuning (SPEC 6), the only one: `Finetuner` trains every member with it.
///
///   forward (this rank's n_r rows of a global batch of B trials) -> class-weighted BCE (eq. 7,
///   `weightedBCE`), the rank's mean scaled by n_r / B and dL/dz likewise, so that the sums over ranks are the global
///   batch's mean and its gradient -> backward -> all-reduce (sum) of the trainable tail of the arena (LoRA and
///   head: the frozen part gets no gradient) and of the loss -> `finishStep` (clip, update).
///
/// A rank dealt no row (B smaller than the world size) adds a zero gradient and loss, so any world size takes the
/// steps of one rank. Returns the global batch's loss; throws `finishStep`'s `TrainingError` on a non-finite loss or
/// gradient norm, on every rank alike and before any parameter changes.
func outcomeStep(_ outcome: OutcomeModel, rows: [StoredTrial], globalRows b: Int, weights: (positive: Float, negative: Float),
                 builder: BatchBuilder, arena: ActivationArena, optimizer: Optimizer, maxNorm: Float, comm: Communicator) throws -> Double {
    let p = outcome.params
    arena.reset(); p.zeroGrads()
    var loss = [0.0]
    if !rows.isEmpty {
        let batch = builder.batch(rows)
        let (logits, backward) = outcome.forward(batch, arena: arena)
        let labels = rows.map { Float($0.checkedLabel) }
        let dz = arena.allocate(rows.count)
        loss[0] = Double(labels.withUnsafeBufferPointer {
            weightedBCE(logits: logits, labels: $0.baseAddress!, count: rows.count, positiveWeight: weights.positive,
                        negativeWeight: weights.negative, dz: dz)
        } * Float(rows.count) / Float(b))
        let share = Float(rows.count) / Float(b)
        for i in 0..<rows.count { dz[i] *= share }
        backward(dz)
    }
    comm.allReduceSum(p.grads + outcome.trainableOffset, count: p.count - outcome.trainableOffset)
    loss.withUnsafeMutableBufferPointer { comm.allReduceSum($0.baseAddress!, count: 1) }
    _ = try finishStep(p, optimizer: optimizer, loss: loss[0], maxNorm: maxNorm)
    return loss[0]
}
