import NN

/// The end of every training step, pretraining and fine-tuning alike, once the gradients are all-reduced:
/// g <- g * maxNorm / (||g|| + 1e-6) when ||g|| > maxNorm (`clipGradientNorm`; maxNorm 0: no clipping), then the
/// optimizer's update.
/// The loss and ||g|| are global values, the same on every rank, so a non-finite one throws on every rank alike,
/// before any parameter changes (an infinite norm with a finite loss would clip the step into NaN weights).
/// Returns ||g|| before clipping.
public func finishStep(_ params: ParameterArena, optimizer: Optimizer, loss: Double, maxNorm: Float, lrScale: Float = 1) throws -> Float {
    let norm = clipGradientNorm(params, maxNorm: maxNorm)
    // `nan`, not the `-nan` a negative NaN prints as.
    func shown(_ v: Double) -> String { v.isNaN ? "nan" : "\(v)" }
    guard loss.isFinite else { throw TrainingError("loss is \(shown(loss))", diverged: true) }
    guard norm.isFinite else { throw TrainingError("gradient norm is \(shown(Double(norm)))", diverged: true) }
    optimizer.update(params, lrScale: lrScale)
    return norm
}
